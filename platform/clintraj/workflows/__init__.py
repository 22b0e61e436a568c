"""One module per job: each wires the stages (data, models, training, evaluation) into a run with
its MLflow records. The jobs in `jobs/` parse flags and call these; tests call them directly."""
