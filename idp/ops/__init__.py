"""Operating the IdP: schema commands, health and readiness, metrics, request ids, sweeping."""
