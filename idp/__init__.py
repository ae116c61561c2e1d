"""Göteborgs Stads Åtkomsttjänst (model): a SITHS eID identity provider."""

import warnings

# pysaml2 imports CFB from cryptography's old place when it loads; not ours to fix, and the
# warning would otherwise greet every `idp` command and every server start.
warnings.filterwarnings("ignore", message="CFB has been moved", category=Warning)
