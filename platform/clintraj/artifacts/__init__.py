"""The artifacts stages hand each other, one module each: the prepared dataset (`dataset`), the
embeddings (`embeddings`) and a task's training sequences (`sequences`). Each module is the only
code that knows its folder's layout; every stage and job reads and writes through it."""
