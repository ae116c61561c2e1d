"""``sp-demo users import|export|report`` and the CSV rules behind them (no network).

Every bad file gets an answer naming each bad line, and changes nothing unless
``--only-good-rows`` says to apply the good rows. Each kind of bad input has its own test.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from sp_demo.cli import main as sp_demo_cli
from sp_demo.db import Database, find_user_by_windows_account
from sp_demo.user_csv import read_import

HEADER = "windows_account,hsa_id\n"
DORIS = "GBGSTAD\\doris.dahl"
DORIS_HSA_ID = "SE2120001355-E0004"


@dataclass
class Register:
    """A seeded mock Treserva register driven through the ``sp-demo`` command."""

    env: dict[str, str]
    directory: Path

    def run(self, *args: str) -> Result:
        return CliRunner().invoke(sp_demo_cli, list(args), env=self.env)

    def import_text(self, text: str, *options: str, encoding: str = "utf-8") -> Result:
        path = self.directory / "import.csv"
        path.write_bytes(text.encode(encoding))
        return self.run("users", "import", str(path), *options)

    def export(self) -> str:
        result = self.run("users", "export")
        assert result.exit_code == 0, result.output
        return result.stdout

    def hsa_id_of(self, account: str) -> str | None:
        database = Database(self.database_url)
        try:
            with database.session() as session:
                user = find_user_by_windows_account(session, account)
                assert user is not None
                return user.hsa_id
        finally:
            database.dispose()

    @property
    def database_url(self) -> str:
        return f"sqlite:///{self.directory / 'sp_demo.sqlite3'}"


@pytest.fixture
def register(tmp_path: Path) -> Register:
    register = Register({"SP_DEMO_VAR_DIR": str(tmp_path)}, tmp_path)
    assert register.run("users", "seed").exit_code == 0
    return register


def refused_lines(result: Result) -> dict[int, str]:
    """{line: message} of the bad lines the import named (on standard error)."""
    assert result.exit_code != 0, result.output
    assert "nothing was changed" in result.stderr
    return {int(n): text for n, text in re.findall(r"line (\d+): (.*)", result.stderr)}


def test_a_good_file_registers_hsa_ids_and_moves_permissions(register: Register) -> None:
    result = register.import_text(
        HEADER + f"{DORIS},{DORIS_HSA_ID}\n", "--by", "SE2120001355-E0005 (Erik Ek)"
    )
    assert result.exit_code == 0, result.output
    assert "1 rows applied: 1 HSA-IDs registered, 1 permissions moved" in result.stdout
    assert register.hsa_id_of(DORIS) == DORIS_HSA_ID
    row = next(line for line in register.export().splitlines() if line.startswith("GBGSTAD\\doris"))
    assert row == f'{DORIS},{DORIS_HSA_ID},Doris Dahl,,"handläggare, Biståndsenheten Lundby"'
    trail = register.run("users", "audit").stdout
    assert re.search(r"SE2120001355-E0005 \(Erik Ek\)\tregister_hsa_id\tGBGSTAD\\doris", trail)
    assert re.search(r"SE2120001355-E0005 \(Erik Ek\)\tmove_permissions\tGBGSTAD\\doris", trail)
    assert "import_csv" in trail

    report = register.run("users", "report")
    assert "5 accounts: 5 ready, 0 cannot log in" in report.stdout


def test_an_export_with_hsa_ids_filled_in_imports_as_it_is(register: Register) -> None:
    exported = register.export()
    filled = exported.replace(f"{DORIS},,", f"{DORIS},{DORIS_HSA_ID},")
    result = register.import_text(filled)
    assert result.exit_code == 0, result.output
    assert "1 HSA-IDs registered" in result.stdout and "4 unchanged" in result.stdout
    assert register.hsa_id_of(DORIS) == DORIS_HSA_ID


def test_excel_style_semicolons_and_bom_are_accepted(register: Register) -> None:
    result = register.import_text(f"\ufeffWindows-konto;HSA-id\r\n{DORIS};{DORIS_HSA_ID}\r\n")
    assert result.exit_code == 0, result.output
    assert register.hsa_id_of(DORIS) == DORIS_HSA_ID


def test_unknown_accounts_are_reported_by_line(register: Register) -> None:
    before = register.export()
    result = register.import_text(
        HEADER
        + f"{DORIS},{DORIS_HSA_ID}\n"
        + "GBGSTAD\\nobody,SE2120001355-E0777\n"
        + "\n"
        + "GBGSTAD\\ghost,SE2120001355-E0778\n"
    )
    lines = refused_lines(result)
    assert set(lines) == {3, 5}
    assert "“GBGSTAD\\nobody” does not exist" in lines[3]
    assert register.export() == before  # Doris's good row was not applied either


def test_duplicate_hsa_ids_in_the_file_are_reported_by_line(register: Register) -> None:
    before = register.export()
    result = register.import_text(
        HEADER + f"{DORIS},{DORIS_HSA_ID}\nGBGSTAD\\bertil.berg,{DORIS_HSA_ID}\n"
    )
    lines = refused_lines(result)
    assert set(lines) == {2, 3}
    assert "also on line 3" in lines[2] and "also on line 2" in lines[3]
    assert register.export() == before


def test_an_hsa_id_already_on_another_account_is_refused(register: Register) -> None:
    before = register.export()
    result = register.import_text(HEADER + f"{DORIS},SE2120001355-E0001\n")
    lines = refused_lines(result)
    assert list(lines) == [2]
    assert "already registered on the account GBGSTAD\\anna.andersson" in lines[2]
    assert register.export() == before


def test_the_same_account_twice_is_refused(register: Register) -> None:
    result = register.import_text(HEADER + f"{DORIS},{DORIS_HSA_ID}\n{DORIS},SE2120001355-E0009\n")
    assert set(refused_lines(result)) == {2, 3}
    assert register.hsa_id_of(DORIS) is None


def test_an_account_with_another_hsa_id_is_refused(register: Register) -> None:
    result = register.import_text(HEADER + "GBGSTAD\\anna.andersson,SE2120001355-E0099\n")
    lines = refused_lines(result)
    assert "already has HSA-ID SE2120001355-E0001" in lines[2]
    assert register.hsa_id_of("GBGSTAD\\anna.andersson") == "SE2120001355-E0001"


@pytest.mark.parametrize(
    "bad",
    [
        "SE2120001355E0004",  # no hyphen
        "se2120001355-E0004",  # lower-case country
        "SE212000135-E0004",  # nine digits
        "SE2120001355-E00_4",  # not alphanumeric
        "SE2120001355-" + "E" * 19,  # 32 characters
        " SE2120001355-E 0004",
    ],
)
def test_malformed_hsa_ids_are_reported_by_line(register: Register, bad: str) -> None:
    result = register.import_text(
        HEADER + f"GBGSTAD\\bertil.berg,SE2120001355-E0002\n{DORIS},{bad}\n"
    )
    lines = refused_lines(result)
    assert list(lines) == [3]
    assert "is not an HSA-ID" in lines[3]
    assert register.hsa_id_of(DORIS) is None


def test_a_file_that_is_not_utf8_is_reported_by_line(register: Register) -> None:
    before = register.export()
    text = HEADER + f"{DORIS},{DORIS_HSA_ID}\nGBGSTAD\\åsa.öberg,SE2120001355-E0010\n"
    result = register.import_text(text, encoding="cp1252")
    lines = refused_lines(result)
    assert list(lines) == [3]
    assert "not UTF-8" in lines[3] and "CSV UTF-8" in lines[3]
    assert register.export() == before


def test_wrong_columns_are_reported_on_the_header_line(register: Register) -> None:
    result = register.import_text(f"account,hsa,comment\n{DORIS},{DORIS_HSA_ID},x\n")
    lines = refused_lines(result)
    assert list(lines) == [1]
    assert "Wrong columns" in lines[1] and "windows_account, hsa_id" in lines[1]
    assert register.hsa_id_of(DORIS) is None


def test_a_row_with_the_wrong_number_of_fields_is_reported_by_line(register: Register) -> None:
    result = register.import_text(HEADER + f"{DORIS},{DORIS_HSA_ID},extra\n")
    lines = refused_lines(result)
    assert "has 3 fields but the header 2" in lines[2]
    assert register.hsa_id_of(DORIS) is None


def test_an_empty_file_is_refused(register: Register) -> None:
    assert "The file is empty" in refused_lines(register.import_text(""))[1]


def test_only_good_rows_applies_the_good_and_reports_the_bad(register: Register) -> None:
    result = register.import_text(
        HEADER + f"GBGSTAD\\nobody,SE2120001355-E0777\n{DORIS},{DORIS_HSA_ID}\n",
        "--only-good-rows",
    )
    assert result.exit_code == 0, result.output
    assert "line 2:" in result.stderr
    assert "1 rows applied" in result.stdout and "1 bad rows not applied" in result.stdout
    assert register.hsa_id_of(DORIS) == DORIS_HSA_ID


def test_a_large_import_shows_its_progress(register: Register) -> None:
    assert register.run("users", "generate", "--count", "400").exit_code == 0
    result = register.import_text(register.export())
    assert result.exit_code == 0, result.output
    progress = re.findall(r"(Checking|Applying) rows: (\d+)/(\d+)", result.stderr)
    # 405 accounts, 41 of them without HSA-ID (skipped, not counted as rows to apply).
    assert ("Checking", "364", "364") in progress and ("Applying", "364", "364") in progress
    assert len(progress) >= 20


def test_the_report_writes_csv(register: Register, tmp_path: Path) -> None:
    out = tmp_path / "report.csv"
    directory = tmp_path / "idp.csv"
    directory.write_text("hsa_id\nSE2120001355-E0001\nSE2120001355-E0002\n", encoding="utf-8")
    result = register.run("users", "report", "--csv", str(out), "--idp-directory", str(directory))
    assert result.exit_code == 0, result.output
    assert "hsa_id_unknown_at_idp: 2" in result.stdout  # Erik's two HSA-IDs
    text = out.read_text(encoding="utf-8-sig")
    assert text.splitlines()[0] == "windows_account,display_name,hsa_id,reasons,description"
    assert f"{DORIS},Doris Dahl,,no_hsa_id;permissions_not_moved," in text


def test_reading_reports_every_problem_with_its_line() -> None:
    parsed = read_import(
        b"windows_account,hsa_id\n"
        b"A,SE2120001355-E0001\n"
        b",SE2120001355-E0002\n"
        b"B,\n"
        b"C,\xe5\n"
        b'"D, with comma",SE2120001355-E0003\n'
    )
    assert [(row.line, row.windows_account) for row in parsed.rows] == [
        (2, "A"),
        (6, "D, with comma"),
    ]
    assert parsed.skipped_lines == [4]
    assert [(p.line, p.problem.code) for p in parsed.problems] == [
        (5, "encoding"),
        (3, "missing_account"),
    ]
