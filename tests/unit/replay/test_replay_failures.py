"""`surge replay` says what it could not use: exit codes, file:line: reason, one line each."""

from __future__ import annotations

import gzip
from pathlib import Path

import orjson
import pytest

from app.cli import main
from app.replay.readers import LogFormat, LogReader

FIXTURES = Path(__file__).parents[2] / "fixtures" / "replay"
LINES = 100


def _jsonl(count: int) -> bytes:
    return b"".join(
        orjson.dumps({"topic": "shop.searches", "ts": 1_700_000_000_000 + i, "sku": f"S-{i % 7}"})
        + b"\n"
        for i in range(count)
    )


def _cut_gzip(path: Path) -> Path:
    """A gzip file whose first member holds LINES whole lines and whose second is cut short."""
    more = gzip.compress(_jsonl(50))
    path.write_bytes(gzip.compress(_jsonl(LINES)) + more[:20])
    return path


def _replay(capsys: pytest.CaptureFixture[str], *args: str | Path) -> tuple[int, list[str]]:
    code = main(["replay", *(str(arg) for arg in args), "--no-progress"])
    return code, capsys.readouterr().err.splitlines()


def test_a_truncated_gzip_exits_1_and_names_the_line_where_it_ends(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = _cut_gzip(tmp_path / "cut.jsonl.gz")
    report = tmp_path / "report"

    code, err = _replay(capsys, log, "--report", report, "--format", "jsonl")

    assert code == 1
    where = f"{log}:{LINES + 1}: truncated_file (EOFError: "
    assert any(line.startswith(f"replay: bad row {where}") for line in err)
    assert err[-1].startswith("replay: the input is truncated (cut.jsonl.gz ends early")
    assert where in (report / "report.md").read_text()
    summary = orjson.loads((report / "summary.json").read_bytes())
    assert summary["inputs"][0]["events"] == LINES  # what was read is still replayed


def test_a_gzip_cut_before_its_first_line_is_one_line_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = tmp_path / "head.jsonl.gz"
    log.write_bytes(gzip.compress(_jsonl(10))[:20])

    code, err = _replay(capsys, log, "--report", tmp_path / "r")

    assert code == 2
    assert len(err) == 1
    assert err[0].startswith(f"replay: {log}: the file ends before its first line (EOFError")


def test_a_forced_format_that_the_first_line_contradicts_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = FIXTURES / "rees46.csv"

    code, err = _replay(capsys, log, "--report", tmp_path / "r", "--format", "jsonl")

    assert code == 2
    assert err == [
        f"replay: {log}: --format jsonl does not fit its first line, which is rees46; "
        "drop --format to detect it"
    ]


@pytest.mark.parametrize(
    ("log_format", "reason"),
    [("jsonl", "not_json"), ("rees46", "bad_csv_row"), ("online-retail", "bad_csv_row")],
)
def test_a_forced_format_that_reads_nothing_exits_1_with_line_numbers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], log_format: str, reason: str
) -> None:
    log = tmp_path / "mystery.txt"
    log.write_text("a;b;c\n1;2;3\n4;5;6\n")

    code, err = _replay(capsys, log, "--report", tmp_path / "r", "--format", log_format)

    assert code == 1
    assert [line for line in err if line.startswith("replay: bad row")] == [
        f"replay: bad row {log}:{n}: {reason}" for n in (1, 2, 3)
    ]
    assert err[-1] == (
        "replay: nothing usable was read (0 events from 3 rows); check the file(s) and --format"
    )


def test_the_first_bad_rows_carry_their_line_numbers() -> None:
    with LogReader(FIXTURES / "rees46.csv", LogFormat.REES46) as reader:
        list(reader.events())
    assert reader.stats.bad_row_lines("rees46.csv") == [
        "rees46.csv:7: bad_value:event_type",
        "rees46.csv:8: missing_field:sku",
        "rees46.csv:9: bad_value:ts",
        "rees46.csv:10: bad_csv_row",
        "rees46.csv:12: truncated_line",
    ]


def test_only_the_first_bad_rows_are_listed_but_all_are_counted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = tmp_path / "noisy.jsonl"
    log.write_bytes(_jsonl(5) + b"not json\n" * 30)

    code, err = _replay(capsys, log, "--report", tmp_path / "r")

    assert code == 0  # some rows are usable and nothing is cut: bad rows are not fatal
    listed = [line for line in err if line.startswith("replay: bad row")]
    assert listed[0] == f"replay: bad row {log}:6: not_json"
    assert len(listed) == 10
    assert "bad rows 30" in err[-1]


def test_a_report_path_that_is_a_file_is_one_line_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    taken = tmp_path / "report.md"
    taken.write_text("mine\n")

    code, err = _replay(capsys, FIXTURES / "events.jsonl", "--report", taken)

    assert code == 2
    assert err == [f"replay: --report {taken} is a file; it must be a directory"]
    assert taken.read_text() == "mine\n"


def test_a_schedule_with_a_supplier_the_policy_lacks_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text("suppliers:\n  S-7: {lead_time_hours: 2, capacity_per_day: 1000}\n")
    calendar = tmp_path / "calendar.yaml"
    calendar.write_text(
        "schedules:\n"
        "  - {id: acme-monthly, account: ACME, skus: [V-50], supplier: S-7}\n"
        "  - {id: beta-monthly, account: BETA, skus: [V-20], supplier: S-99}\n"
    )

    code, err = _replay(
        capsys,
        FIXTURES / "events.jsonl",
        "--report",
        tmp_path / "r",
        "--policy",
        policy,
        "--calendar",
        calendar,
    )

    assert code == 2
    assert len(err) == 1
    assert err[0].startswith(
        f"replay: {calendar}:3: schedules[1].supplier: schedule 'beta-monthly' names supplier "
        "'S-99', which is not in the policy's suppliers ("
    )
    assert "S-7" in err[0]
