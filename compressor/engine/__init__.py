"""Training engine: device setup, the training loop, evaluation, checkpoints and the run."""
