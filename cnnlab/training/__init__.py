"""Training: the loop (Trainer), its callbacks, optimizers and precision, and data-parallel ranks."""
