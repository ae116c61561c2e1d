"""Migration scripts, oldest first by revision number."""
