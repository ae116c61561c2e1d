"""Transient state: pending logins, SSO sessions, the replay cache and the audit trail."""
