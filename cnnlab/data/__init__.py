"""Data: file formats, the source chain for the built-in sets, decoded caches, splits and batch transforms."""
