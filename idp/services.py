"""The long-lived objects every login page and method shares, built once at start-up.

Protocol-neutral on purpose: the SAML and OIDC providers are wired beside it at start-up
(:mod:`idp.app`) and answer a finished login through the ``responders`` registered here, so
this module imports no protocol package.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from sqlalchemy import Connection
from starlette.requests import Request
from starlette.responses import Response

from idp.blocking import BlockingCalls
from idp.client_certificate import TrustedProxies
from idp.config import Settings
from idp.db import Database
from idp.login.authenticate import CertificateAuthentication
from idp.login.steps import FinishedLogin, LoginSteps

# Builds a finished login's answer (signing: blocks) once the transaction that settled it has
# committed. Never raises for a refusal: the refusal is what it returns.
BuildAnswer = Callable[[], object]


class Responder(Protocol):
    """A protocol's answer to a finished login, in three steps: :meth:`settle` in the
    transaction that finished the login, the :data:`BuildAnswer` it returns once that
    transaction has committed (both in the blocking call that finished the login, a worker
    thread or the event loop through :class:`idp.blocking.BlockingCalls`: one hand-over from
    the event loop, not two), and :meth:`render` on the event loop.

    A ``repeated`` finished login: the same browser asks again for the answer to a login it
    already completed (idp.login.pending.REPEAT_WINDOW); the responder answers the same request
    once more.
    """

    def settle(self, session: Connection, finished: FinishedLogin) -> BuildAnswer:
        """Record in ``session`` what must be kept with ``finished`` for its answer (SAML: the
        SP as a participant of the SSO session, named as its Response will name the user),
        and return the answer's builder. No signing here: the transaction's locks are not held
        through it."""
        ...

    def render(self, request: Request, prepared: object) -> Response:
        """The page or redirect that takes the browser back, for what the builder made."""
        ...


@dataclass(frozen=True)
class BackToService:
    """How the browser takes a failed or cancelled login back to the application that asked:
    a form to ``action`` (``method`` "post" with ``fields``, or "get" to a URL)."""

    action: str
    method: str
    fields: dict[str, str] = field(default_factory=dict)


class FailureResponder(Protocol):
    """A protocol's answer to a login that ended without success, for the application that
    asked (``protocol_state`` as the protocol stored it); None where it has none to give.
    Blocks (signing): call it from a worker thread."""

    def __call__(
        self, protocol_state: dict, *, cancelled: bool, detail: str
    ) -> BackToService | None: ...


@dataclass
class Services:
    settings: Settings
    database: Database
    trusted_proxies: TrustedProxies
    # The login's use cases (idp.login), built once at start-up with the validator, the login
    # policy and the audit sink.
    authenticator: CertificateAuthentication
    steps: LoginSteps
    # Where a handler runs a use case: the event loop first for an in-process database.
    blocking_calls: BlockingCalls
    responders: dict[str, Responder] = field(default_factory=dict)
    failure_responders: dict[str, FailureResponder] = field(default_factory=dict)
