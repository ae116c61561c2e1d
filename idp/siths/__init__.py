"""SITHS certificate validation. Knows nothing about HTTP or about protocols."""
