"""Every bad SURGE_* value is one clear line and exit 2 in every subcommand; no default key.

The settings are driven through the real command line (:func:`app.cli.main`, in process)
on paths that stop at the settings: each example sets one variable to a bad value and
expects exit 2, the variable's name on stderr and no traceback.
"""

from __future__ import annotations

import os
import re
import string
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import SecretStr, ValidationError

from app import cli
from app.config import (
    MISSING_SNAPSHOT_KEY,
    PUBLIC_OLD_DEFAULT_KEY,
    Settings,
    SettingsError,
    env_name,
    load_settings,
    unknown_names,
)
from app.streaming.state import SignatureError, StoredState, sign_state, verify_state

ROOT = Path(__file__).resolve().parents[2]
PRINTABLE = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=30)
LETTERS = st.text(alphabet=string.ascii_letters, min_size=1, max_size=12)
EMPTY = st.sampled_from(["", " ", "\t"])
BOOL_WORDS = {"true", "false", "t", "f", "yes", "no", "y", "n", "on", "off", "1", "0"}
TOPIC = re.compile(r"[A-Za-z0-9._-]{1,249}")


def whole(low: int, high: int | None = None) -> st.SearchStrategy[str]:
    """Text that is not a whole number from ``low`` to ``high``."""
    outside = st.integers(max_value=low - 1)
    if high is not None:
        outside = outside | st.integers(min_value=high + 1)
    return outside.map(str) | LETTERS | st.sampled_from(["1.5", "", "12abc"])


def positive() -> st.SearchStrategy[str]:
    """Text that is not a finite number > 0."""
    not_positive = st.floats(max_value=0.0, allow_nan=False).map(repr)
    return not_positive | LETTERS | st.sampled_from(["nan", "inf", "-inf", "", "1,5"])


def not_one_of(*allowed: str) -> st.SearchStrategy[str]:
    return PRINTABLE.filter(lambda text: text not in allowed)


def not_a_topic(limit: int = 249) -> st.SearchStrategy[str]:
    bad_char = PRINTABLE.filter(
        lambda text: TOPIC.fullmatch(text) is None and text not in {".", ".."}
    )
    return bad_char | st.just("x" * (limit + 1)) | st.sampled_from(["", ".", ".."])


def anything_set() -> st.SearchStrategy[str]:
    """A set value where the protocol does not use it (a cross-setting error)."""
    return st.text(alphabet=string.ascii_letters + "/._-", min_size=1, max_size=20) | EMPTY


#: Bad values for every setting (a new setting must be added here: a test checks that).
BAD: dict[str, st.SearchStrategy[str]] = {
    "kafka_bootstrap_servers": LETTERS
    | st.sampled_from(["", "host:0", "host:65536", "host:port", "a b:9092", "h:1,,h:2"]),
    "kafka_security_protocol": not_one_of("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"),
    "kafka_sasl_mechanism": not_one_of("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"),
    "kafka_sasl_username": anything_set(),
    "kafka_sasl_password": anything_set(),
    "kafka_ssl_cafile": anything_set(),
    "kafka_ssl_certfile": anything_set(),
    "kafka_ssl_keyfile": anything_set(),
    "kafka_ssl_key_password": anything_set(),
    "topic_searches": not_a_topic(),
    "topic_cart_adds": not_a_topic(),
    "topic_orders": not_a_topic(),
    "topic_dead_letters": not_a_topic(),
    "topic_triggers": not_a_topic(),
    "topic_forecasts": not_a_topic(),
    "topic_calendar": not_a_topic(),
    "topic_partitions": whole(1),
    "publish_forecasts": PRINTABLE.filter(lambda text: text.strip().lower() not in BOOL_WORDS),
    "app_id": not_a_topic(200),
    "web_host": EMPTY | PRINTABLE.map(lambda text: f"host {text}"),
    "web_port": whole(1, 65535),
    "data_dir": EMPTY,
    "store": PRINTABLE.filter(lambda text: not text.startswith(("memory://", "rocksdb://"))),
    "group_instance_id": not_a_topic(),
    "standby_replicas": whole(0),
    "processing_guarantee": not_one_of("at_least_once", "exactly_once"),
    "snapshot_hmac_key": st.text(alphabet=string.printable.strip(), min_size=1, max_size=15)
    | st.just(PUBLIC_OLD_DEFAULT_KEY)
    | EMPTY,
    "commit_interval_seconds": positive(),
    "max_fetch_bytes_per_partition": whole(1024),
    "fetch_max_wait_ms": whole(1, 1500),
    "log_level": PRINTABLE.filter(
        lambda text: text.strip().upper() not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}
    ),
    "topic_replication_factor": whole(1),
    # below the heartbeat interval (3 s by default) is bad too
    "broker_session_timeout_seconds": positive() | st.sampled_from(["3", "2.5", "0.1"]),
    "broker_heartbeat_interval_seconds": positive() | st.sampled_from(["30", "45"]),
    "idle_tick_seconds": positive(),
    "merge_hold_events": whole(1),
    "merge_tick_seconds": positive(),
    "state_write_interval_seconds": positive(),
    "transaction_timeout_seconds": positive(),
    "pre_warm_lead_hours": positive(),
    "window_seconds": whole(1),
    "grace_seconds": whole(0),
    "close_drain_seconds": st.floats(max_value=-1e-6, allow_nan=False).map(repr)
    | LETTERS
    | st.sampled_from(["nan", "inf", "", "1,5"]),
    "max_future_seconds": whole(0),
    "policy_file": EMPTY,
    "calendar_file": EMPTY,
    "cache_dir": EMPTY,
    "local_kafka_version": PRINTABLE.filter(
        lambda text: re.fullmatch(r"[0-9]+\.[0-9]+\.[0-9]+", text) is None
    ),
    "local_kafka_port": whole(0, 65535),
    "local_kafka_controller_port": whole(0, 65535),
    "local_kafka_heap": PRINTABLE.filter(
        lambda text: re.fullmatch(r"[1-9][0-9]*[kKmMgG]?", text) is None
    ),
}

#: Subcommands whose first step is reading the settings (none starts anything with bad ones).
COMMANDS = {
    "kafka status": ["kafka", "status"],
    "worker": ["worker"],
    "generate": ["generate", "--out", os.devnull, "--duration", "1"],
    "demo": ["demo", "--seconds", "1"],
}


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """No SURGE_* variable and no .env file but the ones a test sets."""
    for name in [n for n in os.environ if n.upper().startswith("SURGE_")]:
        monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SURGE_CACHE_DIR", str(tmp_path / "cache"))

    class NoDemo:  # a settings check that let a bad value through must not start a demo
        def __init__(self, *args: Any) -> None:
            raise AssertionError("the demo started despite a bad setting")

    monkeypatch.setattr("app.traffic.demo.Demo", NoDemo)
    yield


def test_every_setting_has_bad_values_under_test() -> None:
    assert set(BAD) == set(Settings.model_fields)


@pytest.mark.parametrize("field", sorted(BAD))
@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.filter_too_much],
)
@given(data=st.data())
def test_a_bad_value_is_one_clear_line_and_exit_2(
    field: str, data: st.DataObject, capsys: pytest.CaptureFixture[str]
) -> None:
    value = data.draw(BAD[field], label="value")
    command = data.draw(st.sampled_from(sorted(COMMANDS)), label="command")
    variable = env_name(field)
    capsys.readouterr()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(variable, value)
        code = cli.main(COMMANDS[command])
    err = capsys.readouterr().err
    assert code == 2, err
    assert variable in err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert 1 <= len(lines) <= 2, err
    assert all(line.startswith(f"surge {command.split()[0]}: ") for line in lines)
    if field in {"kafka_sasl_password", "kafka_ssl_key_password", "snapshot_hmac_key"}:
        assert len(value.strip()) < 6 or value not in err  # secrets are never echoed


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        (
            "SURGE_WINDOW_SECONDS",
            "abc",
            "SURGE_WINDOW_SECONDS='abc' is not valid; allowed: a whole",
        ),
        ("SURGE_WEB_PORT", "99999", "allowed: a whole number >= 1 and <= 65535"),
        ("SURGE_PROCESSING_GUARANTEE", "twice", "allowed: one of at_least_once, exactly_once"),
        ("SURGE_LOG_LEVEL", "LOUD", "allowed: one of DEBUG, INFO, WARNING, ERROR, CRITICAL"),
        ("SURGE_SNAPSHOT_HMAC_KEY", "short", "SURGE_SNAPSHOT_HMAC_KEY=(hidden) is not valid"),
    ],
)
def test_the_line_names_variable_value_and_what_is_allowed(
    variable: str, value: str, expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(variable, value)
        assert cli.main(["kafka", "status"]) == 2
    assert expected in capsys.readouterr().err


def _surge(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.upper().startswith("SURGE_")}
    return subprocess.run(
        [sys.executable, "-m", "app", *args],
        check=False,
        env={**base, "PYTHONPATH": str(ROOT), **env},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize("command", [["kafka", "status"], ["worker"], ["generate"]])
def test_the_console_script_says_it_without_a_traceback(command: list[str], tmp_path: Path) -> None:
    result = _surge(*command, env={"SURGE_WINDOW_SECONDS": "abc"}, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"surge {command[0]}: SURGE_WINDOW_SECONDS='abc' is not valid; allowed: a whole number >= 1"
    )


def test_a_misspelt_name_gets_the_closest_setting(tmp_path: Path) -> None:
    result = _surge(
        "kafka",
        "status",
        "--run-dir",
        str(tmp_path / "kafka"),
        env={"SURGE_WINDOW_SECOND": "60", "SURGE_FAULT_SEED": "1"},
        cwd=tmp_path,
    )
    assert result.returncode == 3  # no broker running: the status of a stopped one
    assert "SURGE_WINDOW_SECOND is not a setting" in result.stderr
    assert "did you mean SURGE_WINDOW_SECONDS?" in result.stderr
    assert "SURGE_FAULT_SEED" not in result.stderr  # test and bench variables are known


def test_names_in_the_dotenv_file_are_checked_too(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / ".env").write_text("SURGE_GRACE_SECOND=5\nexport SURGE_WEB_PROT=7000\n")
    load_settings()
    err = capsys.readouterr().err
    assert "SURGE_GRACE_SECOND is not a setting" in err
    assert "did you mean SURGE_GRACE_SECONDS?" in err
    assert "did you mean SURGE_WEB_PORT?" in err


def test_unknown_names_without_a_close_setting() -> None:
    assert unknown_names(["SURGE_ZZZZZZZZZZZZZZZZZZZZZZ", "surge_web_port"]) == [
        ("SURGE_ZZZZZZZZZZZZZZZZZZZZZZ", None)
    ]


def test_worker_log_level_flag_is_checked(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as excinfo:
        cli.main(["worker", "--log-level", "LOUD"])
    assert excinfo.value.code == 2
    err = capsys.readouterr().err
    assert "argument --log-level: invalid choice: 'LOUD'" in err
    assert "Traceback" not in err


# -- the snapshot signing key --------------------------------------------------------------


def test_there_is_no_default_signing_key() -> None:
    assert Settings.model_fields["snapshot_hmac_key"].default is None
    settings = Settings()
    assert settings.snapshot_hmac_key is None
    with pytest.raises(SettingsError) as excinfo:
        settings.require_snapshot_key()
    assert str(excinfo.value) == MISSING_SNAPSHOT_KEY


def test_the_old_public_default_is_refused() -> None:
    with pytest.raises(ValidationError):
        Settings(snapshot_hmac_key=SecretStr(PUBLIC_OLD_DEFAULT_KEY))


def test_the_worker_refuses_to_start_without_a_key(tmp_path: Path) -> None:
    result = _surge("worker", env={}, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip() == f"surge worker: {MISSING_SNAPSHOT_KEY}"  # one line


def test_a_snapshot_signed_with_another_key_is_refused(signing_key: str) -> None:
    ours = Settings(snapshot_hmac_key=SecretStr(signing_key))
    theirs = Settings(snapshot_hmac_key=SecretStr("a-different-key-of-some-length"))
    blob = sign_state(
        StoredState("SKU-1", 0, b"pickled", {"t:0": 7}), theirs.require_snapshot_key()
    )
    with pytest.raises(SignatureError, match="signature mismatch"):
        verify_state("SKU-1", blob, ours.require_snapshot_key())
    assert verify_state("SKU-1", blob, theirs.require_snapshot_key()).applied == {"t:0": 7}
