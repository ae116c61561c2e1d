"""Running the IdP: the embedded HTTPS server and its client-certificate listener."""
