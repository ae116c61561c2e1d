""" "SITHS eID på annan enhet": an order, an animated QR code, and the app API.

Modelled on the publicly documented BankID relying-party flow (order → animated QR with an
HMAC-SHA256 auth code that changes every second → collect with status and hint code), adapted to
SITHS: the app signs the order's data with the card's key and sends its certificate, which is
validated by the same ``idp.siths`` code as the client-certificate method.
"""
