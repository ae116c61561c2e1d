"""The directory: people and their HSA-IDs (tjänste-id)."""
