"""The city's service portal (a model): ordering a Göteborg certificate and HSA-ID onto an
existing SITHS card, and the readiness board for the cut-over."""
