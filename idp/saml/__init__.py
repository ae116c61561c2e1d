"""The SAML 2.0 IdP: pysaml2 underneath, one FastAPI router on top."""
