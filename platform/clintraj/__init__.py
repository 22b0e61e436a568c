"""clintraj: clinical sequence modeling with missing modalities, on Ray.

The method, its equations and every choice with its source: METHOD.md beside this file (the
"METHOD.md §N" of the code's comments).
"""

__version__ = "0.1.0"
