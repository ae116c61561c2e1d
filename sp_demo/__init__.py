"""Mock Treserva: a SAML service provider with local users and permissions keyed by HSA-ID."""

import warnings

# pysaml2 imports CFB from cryptography's old place when it loads; not ours to fix (the IdP
# filters the same warning in its own package, which mock Treserva does not lean on for it).
warnings.filterwarnings("ignore", message="CFB has been moved", category=Warning)
