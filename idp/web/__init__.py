"""The browser-facing pages: the method chooser, choosing a tjänste-id, errors."""
