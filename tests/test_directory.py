"""The directory and its CSV import (all or nothing, every bad row named)."""

from __future__ import annotations

from pathlib import Path

import pytest

from idp.db import Database, create_schema
from idp.directory.people import (
    DirectoryError,
    NewEntry,
    add_entry,
    deactivate_entry,
    entry_and_service_ids,
    import_csv,
    list_entries,
)

GOOD = b"""hsa_id,given_name,surname,title,organisation,mail,person_key
SE2120001355-E0001,Anna,Andersson,Handl\xc3\xa4ggare,G\xc3\xb6teborgs Stad,,
SE5567000010-P0001,Anna,Andersson,,Omsorgsbolaget,,SE2120001355-E0001
"""


@pytest.fixture
def database(tmp_path: Path) -> Database:
    database = Database(f"sqlite:///{tmp_path / 'directory.sqlite3'}")
    create_schema(database.engine)
    return database


def test_import_links_service_ids_of_one_person(database: Database) -> None:
    with database.session() as session:
        report = import_csv(session, GOOD)
        assert report.errors == [] and report.added == 2
    with database.session() as session:
        entries = list_entries(session)
        assert entries[0].title == "Handläggare"
        entry, ids = entry_and_service_ids(session, entries[1].hsa_id, ["2120001355", "5567000010"])
        assert entry is not None and entry.hsa_id == entries[1].hsa_id
        assert [e.hsa_id for e in ids] == ["SE5567000010-P0001", "SE2120001355-E0001"]
        _entry, only_city = entry_and_service_ids(session, entries[0].hsa_id, ["2120001355"])
        assert [e.hsa_id for e in only_city] == ["SE2120001355-E0001"]
        assert entry_and_service_ids(session, "SE2120001355-E9999", ["2120001355"]) == (None, [])


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (GOOD.replace(b"E0001,Anna", b"E0001X!,Anna"), "line 2:"),
        (
            GOOD + b"SE2120001355-E0001,Dup,Licate,,,,\n",
            "line 4: SE2120001355-E0001 repeats line 2",
        ),
        (b"hsa,given_name,surname\nSE2120001355-E0001,A,B\n", "line 1: columns must be"),
        (GOOD.replace("ä".encode(), b"\xe4"), "not UTF-8"),
        (GOOD + b"SE2120001355-E0009,,Nameless,,,,\n", "line 4: SE2120001355-E0009: given name"),
        (GOOD + b"SE2120001355-E0010,A,B,,,,,extra\n", "line 4: more fields than columns"),
        (
            GOOD + b"SE2120001355-E0011,An\x0bna,B,,,,\n",
            "line 4: SE2120001355-E0011: given_name contains a control character",
        ),
        (
            GOOD + b"SE2120001355-E0012,Anna,B,Handl\x00aggare,,,\n",
            "line 4: SE2120001355-E0012: title contains a control character",
        ),
    ],
)
def test_bad_csv_changes_nothing_and_names_the_line(
    database: Database, data: bytes, expected: str
) -> None:
    with database.session() as session:
        report = import_csv(session, data)
    assert report.added == 0
    assert any(expected in error for error in report.errors), report.errors
    with database.session() as session:
        assert list_entries(session) == []


def test_import_refuses_hsa_id_already_present(database: Database) -> None:
    with database.session() as session:
        add_entry(session, NewEntry("SE2120001355-E0001", "Anna", "Andersson"))
    with database.session() as session:
        report = import_csv(session, GOOD)
    assert report.errors == ["line 2: SE2120001355-E0001 is already in the directory"]


def test_add_and_deactivate(database: Database) -> None:
    with database.session() as session:
        add_entry(session, NewEntry("SE2120001355-E0002", "Bertil", "Berg"))
        with pytest.raises(DirectoryError):
            add_entry(session, NewEntry("SE2120001355-E0002", "Bertil", "Berg"))
    with database.session() as session:
        deactivate_entry(session, "SE2120001355-E0002")
        with pytest.raises(DirectoryError):
            deactivate_entry(session, "SE2120001355-E9999")
    with database.session() as session:
        assert not list_entries(session)[0].active
