"""The lowest layer: errors, the run configuration, checkpoint files and run-folder locks. Imports nothing else
of cnnlab."""

__version__ = "0.1.0"
