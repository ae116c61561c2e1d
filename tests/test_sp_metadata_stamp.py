"""The SP metadata directory's stamp (idp.saml.server): what decides, on every SAML call,
whether the pysaml2 server is rebuilt from the directory."""

from __future__ import annotations

import os
from pathlib import Path

from idp.saml.server import _directory_stamp


def test_every_change_to_an_xml_file_changes_the_stamp(tmp_path: Path) -> None:
    first = tmp_path / "a.xml"
    first.write_text("<a/>")
    stamp = _directory_stamp(tmp_path)
    assert stamp == ((str(first), first.stat().st_mtime_ns, 4),)

    second = tmp_path / "b.xml"
    second.write_text("<b/>")
    added = _directory_stamp(tmp_path)
    assert [name for name, _, _ in added] == [str(first), str(second)]

    first.write_text("<a>longer</a>")
    rewritten = _directory_stamp(tmp_path)
    assert rewritten != added

    # Same size, only the time differs (an editor saving the same length).
    second.write_text("<c/>")
    os.utime(second, ns=(1, 1))
    assert _directory_stamp(tmp_path) != rewritten

    second.unlink()
    assert [name for name, _, _ in _directory_stamp(tmp_path)] == [str(first)]


def test_other_files_directories_and_a_missing_directory_are_no_metadata(tmp_path: Path) -> None:
    (tmp_path / "README").write_text("not metadata")
    (tmp_path / "sp.xml.bak").write_text("<old/>")
    (tmp_path / "folder.xml").mkdir()
    assert _directory_stamp(tmp_path) == ()
    assert _directory_stamp(tmp_path / "missing") == ()
    assert _directory_stamp(tmp_path / "README") == ()


def test_a_symlinked_file_counts_by_its_target(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    target.mkdir()
    (target / "sp.xml").write_text("<sp/>")
    (tmp_path / "sp.xml").symlink_to(target / "sp.xml")
    ((name, _, size),) = _directory_stamp(tmp_path)
    assert name == str(tmp_path / "sp.xml") and size == len("<sp/>")
