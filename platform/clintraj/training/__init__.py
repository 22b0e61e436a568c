"""Training on Ray Train, one module per trainer: pretraining (`pretrain`), static baselines
(`static`), sequential fine-tuning (`sequential`, its decoder in `decoder`), on one skeleton
(`loop`: early stopping, reporting, resuming, the `TorchTrainer`). `capabilities` says what a
machine can honour, `callbacks` logs epochs to MLflow from the Train controller."""
