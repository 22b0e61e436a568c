"""The paper's tables and the report page, regenerated from an experiment's MLflow runs."""
