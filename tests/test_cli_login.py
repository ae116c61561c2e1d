"""The IT contact's path, over real sockets: issue a card and register the person with the
``idp`` command, then log in with that card."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import IdpUnderTest
from tests.helpers.flows import login_with_card, posted_form
from tests.helpers.support import browser, reason_code


def test_card_from_idp_card_issue_logs_in_after_registration(
    idp: IdpUnderTest, tmp_path: Path
) -> None:
    hsa_id = "SE2120001355-E0777"
    issued = idp.idp_cli(
        "card",
        "issue",
        "--hsa-id",
        hsa_id,
        "--given-name",
        "Åsa",
        "--surname",
        "Öberg",
        "--org-number",
        "2120001355",
        "--out",
        str(tmp_path),
        "--pki",
        str(idp.pki.directory),
    )
    assert issued.returncode == 0, issued.stderr
    card = (tmp_path / f"{hsa_id}.crt.pem", tmp_path / f"{hsa_id}.key.pem")
    assert all(path.exists() for path in card) and (tmp_path / f"{hsa_id}.p12").exists()

    # Not yet in the directory: refused with a message saying what to do.
    login_url, _ = idp.sp.login_url()
    with browser(idp.ca_file, card) as client:
        assert (
            reason_code(login_with_card(client, login_url, idp.base_url).text) == "unknown_person"
        )

    added = idp.idp_cli(
        "people",
        "add",
        "--hsa-id",
        hsa_id,
        "--given-name",
        "Åsa",
        "--surname",
        "Öberg",
        "--title",
        "Biståndshandläggare",
        "--organisation",
        "Göteborgs Stad",
    )
    assert added.returncode == 0, added.stderr
    listed = idp.idp_cli("people", "list")
    assert hsa_id in listed.stdout and "Åsa Öberg" in listed.stdout

    login_url, request_id = idp.sp.login_url()
    with browser(idp.ca_file, card) as client:
        final = login_with_card(client, login_url, idp.base_url)
    _action, fields = posted_form(final)
    parsed = idp.sp.parse(fields["SAMLResponse"], request_id)
    assert parsed.ava["http://sambi.se/attributes/1/employeeHsaId"] == [hsa_id]
    assert parsed.ava["http://sambi.se/attributes/1/givenName"] == ["Åsa"]


def test_people_cli_refuses_bad_input(idp: IdpUnderTest, tmp_path: Path) -> None:
    bad = idp.idp_cli("people", "add", "--hsa-id", "SE212-X", "--given-name", "A", "--surname", "B")
    assert bad.returncode != 0 and "does not have the form" in bad.stderr
    duplicate = idp.idp_cli(
        "people", "add", "--hsa-id", "SE2120001355-E0001", "--given-name", "A", "--surname", "B"
    )
    assert duplicate.returncode != 0 and "already in the directory" in duplicate.stderr
    unknown = idp.idp_cli("people", "deactivate", "SE2120001355-E9999")
    assert unknown.returncode != 0 and "not in the directory" in unknown.stderr
    csv_file = tmp_path / "bad.csv"
    csv_file.write_text("hsa_id,given_name,surname\nSE2120001355-E0800,A,B\nnope,C,D\n")
    imported = idp.idp_cli("people", "import", str(csv_file))
    assert imported.returncode != 0
    assert "line 3:" in imported.stderr and "nothing was imported" in imported.stderr
    assert "SE2120001355-E0800" not in idp.idp_cli("people", "list").stdout
    linked = idp.idp_cli(
        "people",
        "add",
        "--hsa-id",
        "SE5567000010-P0777",
        "--given-name",
        "A",
        "--surname",
        "B",
        "--same-person-as",
        "SE2120001355-E9998",
    )
    assert linked.returncode != 0 and "not in the directory" in linked.stderr
