"""Metric definitions every stage shares: task metrics with bootstrap CIs (`prediction`) and the
pretraining retrieval scores (`retrieval`). Pure numpy / torch: no stage, no I/O."""
