"""Mock Treserva: a SAML service provider with local users and permissions keyed by HSA-ID."""
