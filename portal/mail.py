"""Mail over SMTP through an outbox.

:func:`queue` writes a mail into the outbox in the caller's transaction, so the mail exists
exactly when the change it tells about does; nothing is sent there. :func:`send_due` hands the
due mails to the SMTP server (``Settings.smtp_*``); a mail the server does not take stays in
the outbox with its error and is tried again later, each time waiting twice as long (up to an
hour). The app runs :func:`send_due` in the background; ``portal outbox send`` runs it once.
"""

from __future__ import annotations

import datetime as dt
import logging
import smtplib
from collections.abc import Callable
from contextlib import AbstractContextManager
from email.message import EmailMessage
from email.utils import make_msgid

from sqlalchemy import select
from sqlalchemy.orm import Session

from portal.config import Settings
from portal.models import OutboxMail

logger = logging.getLogger("portal.mail")
MAX_BACKOFF = dt.timedelta(hours=1)


def queue(
    session: Session, recipient: str, subject: str, body: str, *, order_id: int | None = None
) -> OutboxMail:
    now = dt.datetime.now(dt.UTC)
    mail = OutboxMail(
        order_id=order_id,
        recipient=recipient,
        subject=subject,
        body=body,
        created_at=now,
        attempts=0,
        next_attempt_at=now,
        last_error="",
    )
    session.add(mail)
    session.flush()
    return mail


def build_message(settings: Settings, mail: OutboxMail) -> EmailMessage:
    message = EmailMessage()
    message["From"] = settings.smtp_sender
    message["To"] = mail.recipient
    message["Subject"] = mail.subject
    message["Message-ID"] = make_msgid(idstring=f"portal-outbox-{mail.id}")
    message.set_content(mail.body)
    return message


def send_due(
    settings: Settings,
    sessions: Callable[[], AbstractContextManager[Session]],
    now: dt.datetime | None = None,
) -> tuple[int, int]:
    """Try every due mail once; return (sent, still waiting). Never raises for SMTP trouble."""
    moment = now or dt.datetime.now(dt.UTC)
    with sessions() as session:
        due = list(
            session.scalars(
                select(OutboxMail)
                .where(OutboxMail.sent_at.is_(None), OutboxMail.next_attempt_at <= moment)
                .order_by(OutboxMail.id)
            )
        )
        if not due:
            return 0, 0
        sent = 0
        try:
            with smtplib.SMTP(
                settings.smtp_host, settings.smtp_port, timeout=settings.smtp_timeout_seconds
            ) as smtp:
                for mail in due:
                    smtp.send_message(build_message(settings, mail))
                    mail.sent_at = moment
                    mail.attempts += 1
                    sent += 1
        except (OSError, smtplib.SMTPException) as exc:
            for mail in due:
                if mail.sent_at is None:
                    mail.attempts += 1
                    mail.last_error = f"{type(exc).__name__}: {exc}"[:1000]
                    wait = dt.timedelta(seconds=settings.outbox_retry_seconds) * 2 ** (
                        mail.attempts - 1
                    )
                    mail.next_attempt_at = moment + min(wait, MAX_BACKOFF)
            logger.warning(
                "SMTP %s:%s did not take %d mail(s); they stay in the outbox: %s",
                settings.smtp_host,
                settings.smtp_port,
                len(due) - sent,
                exc,
            )
        return sent, len(due) - sent


def retry_now(session: Session) -> int:
    """Make every unsent mail due at once (after the SMTP server is back); return how many."""
    waiting = list(session.scalars(select(OutboxMail).where(OutboxMail.sent_at.is_(None))))
    now = dt.datetime.now(dt.UTC)
    for mail in waiting:
        mail.next_attempt_at = now
    return len(waiting)
