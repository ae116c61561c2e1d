"""Directory tables.

One row is one HSA-ID (tjänste-id). A person who holds HSA-IDs in several organisations has one
row per HSA-ID, linked by the same ``person_key``; the login asks which one to use.
"""

from __future__ import annotations

from sqlalchemy import Boolean, String
from sqlalchemy.orm import Mapped, mapped_column

from idp.db import Base


class DirectoryEntry(Base):
    __tablename__ = "directory_entries"

    hsa_id: Mapped[str] = mapped_column(String(31), primary_key=True)
    person_key: Mapped[str] = mapped_column(String(64), index=True)
    given_name: Mapped[str] = mapped_column(String(200))
    surname: Mapped[str] = mapped_column(String(200))
    title: Mapped[str] = mapped_column(String(200), default="")
    organisation: Mapped[str] = mapped_column(String(200), default="")
    mail: Mapped[str] = mapped_column(String(320), default="")
    active: Mapped[bool] = mapped_column(Boolean, default=True)

    @property
    def display_name(self) -> str:
        return f"{self.given_name} {self.surname}"

    @property
    def organisation_number(self) -> str:
        return self.hsa_id[2:12]
