"""Serving: prediction on a user's pictures, exports for other runtimes, and the web page and JSON API."""
