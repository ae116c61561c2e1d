"""The login in progress: pending logins bound to a browser, SSO sessions, choosing a tjänste-id.

Protocol-neutral: a protocol starts a pending login and is called back with an
:class:`idp.authn.Authentication` when the user has finished.
"""
