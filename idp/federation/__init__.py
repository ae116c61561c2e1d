"""Federation metadata: reading it safely, checking it, signing it, and loading it from afar.

One concern a module: :mod:`.document` (bounded, DTD-free parsing), :mod:`.signing` (enveloped
metadata signatures through the in-process xmlsec backend), :mod:`.schema` (the SAML metadata
XSD), :mod:`.checks` (the integrator's report), :mod:`.aggregate` (building a signed
EntitiesDescriptor), :mod:`.idp_metadata` and :mod:`.endpoints` (the IdP's own metadata),
:mod:`.remote` (a remote signed aggregate as an SP metadata source, handed to the SAML side at
start-up).

Depends on :mod:`idp.saml` one way: the SAML side reads SP metadata through what it is given
(:class:`idp.saml.server.SpMetadataSource`) and never imports this package.
"""
