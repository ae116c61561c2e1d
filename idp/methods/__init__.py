"""Login methods. Each ends in a validated SITHS certificate handed to ``idp.login``."""
