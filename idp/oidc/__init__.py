"""The OpenID Provider: authorization code flow with PKCE (S256) on authlib's server classes.

It shares the login pages, both SITHS methods and the SSO session with SAML: an authorization
request becomes a pending login with ``protocol="oidc"`` (or is answered at once from a live SSO
session), and the responder from :func:`idp.oidc.endpoints.oidc_login_responder` answers when
the login finishes.

One concern per module, dependencies pointing downwards:

- ``settings``: lifetimes and the key directory (``IDP_OIDC_*``)
- ``models``: the tables (clients, authorization codes, access tokens)
- ``clients``: registering clients and authlib's view of one (``RegisteredClient``)
- ``claims``: which claims a client gets, ``sub``, ``acr`` and ``amr``
- ``keys``: the signing keys on disk, their rollover and the published JWKS
- ``codes``, ``tokens``: single-use codes and the access tokens they bought
- ``starlette_adapter``: authlib's ``AuthorizationServer`` on Starlette requests
- ``grants``, ``userinfo``, ``end_session``: one protocol step per class
- ``provider``: the authlib server wired to all of the above
- ``authorization``: the authorization step's decisions (SSO, fresh login, answer)
- ``discovery``, ``endpoints``, ``cli``: what HTTP and the operator see
"""
