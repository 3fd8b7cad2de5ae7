"""Models: layer specs to torch.nn, the Keras-style summary, the presets, and inference (one evaluate)."""
