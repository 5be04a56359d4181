"""Settings come from SURGE_ environment variables; secrets never show."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from pydantic import ValidationError

from app.config import ProcessingGuarantee, SaslMechanism, SecurityProtocol, Settings

SECRET = "hunter2-very-secret"


def test_environment_with_one_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SURGE_TOPIC_ORDERS", "eu.orders")
    monkeypatch.setenv("SURGE_WINDOW_SECONDS", "60")
    monkeypatch.setenv("SURGE_PROCESSING_GUARANTEE", "exactly_once")
    monkeypatch.setenv("WINDOW_SECONDS", "1")  # no prefix: ignored
    settings = Settings()
    assert settings.topic_orders == "eu.orders"
    assert settings.window_seconds == 60
    assert settings.processing_guarantee is ProcessingGuarantee.EXACTLY_ONCE
    assert settings.input_topics["eu.orders"] == "order"


def test_dotenv_file_is_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / ".env").write_text("SURGE_GRACE_SECONDS=30\nSURGE_WEB_PORT=7000\n")
    monkeypatch.chdir(tmp_path)
    settings = Settings()
    assert (settings.grace_seconds, settings.web_port) == (30, 7000)


def test_secrets_never_appear_in_repr_or_logs(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("SURGE_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("SURGE_KAFKA_SASL_MECHANISM", "SCRAM-SHA-512")
    monkeypatch.setenv("SURGE_KAFKA_SASL_USERNAME", "svc-surge")
    monkeypatch.setenv("SURGE_KAFKA_SASL_PASSWORD", SECRET)
    monkeypatch.setenv("SURGE_SNAPSHOT_HMAC_KEY", SECRET)
    settings = Settings()
    with caplog.at_level(logging.INFO):
        logging.getLogger("test").info("settings: %s / %r", settings, settings)
    assert SECRET not in repr(settings)
    assert SECRET not in str(settings)
    assert SECRET not in caplog.text
    assert SECRET not in settings.model_dump_json()
    kwargs = settings.kafka_client_kwargs()
    assert kwargs["sasl_mechanism"] == SaslMechanism.SCRAM_SHA_512.value
    assert kwargs["sasl_plain_password"] == SECRET
    assert kwargs["security_protocol"] == SecurityProtocol.SASL_SSL.value
    assert "ssl_context" in kwargs


def test_sasl_without_credentials_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SURGE_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("SURGE_KAFKA_SASL_MECHANISM", "PLAIN")
    monkeypatch.setenv("SURGE_KAFKA_SASL_PASSWORD", SECRET)
    with pytest.raises(ValidationError) as excinfo:
        Settings()
    assert "SURGE_KAFKA_SASL_USERNAME" in str(excinfo.value)
    assert SECRET not in str(excinfo.value)


def test_bad_values_name_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SURGE_WEB_PORT", "99999")
    with pytest.raises(ValidationError) as excinfo:
        Settings()
    assert "web_port" in str(excinfo.value)
