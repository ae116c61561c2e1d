"""Mock Treserva: a SAML service provider with local users and permissions keyed by HSA-ID."""

import idp  # noqa: F401 - its warning filter covers pysaml2 here too
