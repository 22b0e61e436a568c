"""What a trained model did, for people: comparison tables (`comparison`), figures (`plots`),
pretraining's retrieval table and projection (`pretraining`), attention under modality ablation
(`attention`). Metric definitions live in `clintraj.metrics`."""
