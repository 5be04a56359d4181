"""Settings come from SURGE_ environment variables; secrets never show."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError

from app.config import (
    ProcessingGuarantee,
    SaslMechanism,
    SecurityProtocol,
    Settings,
    SettingsError,
    load_settings,
)

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


def test_a_missing_ca_file_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from app.cli import main

    missing = tmp_path / "ca.pem"
    for name in [n for n in os.environ if n.startswith("SURGE_")]:
        monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SURGE_KAFKA_SECURITY_PROTOCOL", "SSL")
    monkeypatch.setenv("SURGE_KAFKA_SSL_CAFILE", str(missing))
    monkeypatch.setenv("SURGE_SNAPSHOT_HMAC_KEY", SECRET)

    assert main(["worker"]) == 2
    assert capsys.readouterr().err == (
        f"surge worker: SURGE_KAFKA_SSL_CAFILE={missing}: the file does not exist\n"
    )


def test_tls_files_that_are_not_pem_are_named(tmp_path: Path) -> None:
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    with pytest.raises(SettingsError, match=f"SURGE_KAFKA_SSL_CAFILE={junk}: not a PEM file"):
        Settings(kafka_security_protocol=SecurityProtocol.SSL, kafka_ssl_cafile=junk).ssl_context()
    with pytest.raises(SettingsError, match=f"SURGE_KAFKA_SSL_CERTFILE={junk}: cannot load"):
        Settings(
            kafka_security_protocol=SecurityProtocol.SSL, kafka_ssl_certfile=junk
        ).ssl_context()


def test_sasl_and_tls_settings_that_the_protocol_ignores_are_errors() -> None:
    with pytest.raises(SettingsError, match="SURGE_KAFKA_SASL_MECHANISM set, but "):
        load_settings(kafka_sasl_mechanism="PLAIN")
    with pytest.raises(SettingsError, match=r"SURGE_KAFKA_SSL_CAFILE set, but .* does not use TLS"):
        load_settings(kafka_ssl_cafile="/etc/ssl/ca.pem")
    with pytest.raises(SettingsError, match="SURGE_KAFKA_SSL_KEYFILE is set without"):
        load_settings(kafka_security_protocol="SSL", kafka_ssl_keyfile="/etc/ssl/key.pem")


def test_a_refused_sasl_login_names_the_settings_to_check() -> None:
    from aiokafka.errors import SaslAuthenticationFailed, UnsupportedSaslMechanismError

    settings = Settings(
        kafka_security_protocol=SecurityProtocol.SASL_PLAINTEXT,
        kafka_sasl_mechanism=SaslMechanism.SCRAM_SHA_512,
        kafka_sasl_username="svc-surge",
        kafka_sasl_password=SecretStr(SECRET),
    )
    problem = settings.connection_problem(SaslAuthenticationFailed("bad credentials"))
    assert problem is not None
    assert "SURGE_KAFKA_SASL_USERNAME='svc-surge'" in problem
    assert "SURGE_KAFKA_SASL_PASSWORD" in problem and SECRET not in problem
    unsupported = settings.connection_problem(UnsupportedSaslMechanismError("no"))
    assert unsupported is not None and "SURGE_KAFKA_SASL_MECHANISM=SCRAM-SHA-512" in unsupported
    assert settings.connection_problem(TimeoutError("slow")) is None
