"""The engine: one training loop for train and distill, evaluation, metrics, checkpoints."""
