"""The test kit's shared helpers: servers on loopback, the browser stand-in, the independent SP,
cards made to order, the mock Treserva fixture. Tests import from here; nothing here is a test."""
