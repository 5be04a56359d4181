"""Settings from environment variables prefixed ``SURGE_`` (and an optional ``.env``).

Secrets are :class:`pydantic.SecretStr`: they print as ``**********`` in ``repr``, logs
and validation errors, and are revealed only where a Kafka client needs them.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

ENV_PREFIX = "SURGE_"


class SecurityProtocol(StrEnum):
    PLAINTEXT = "PLAINTEXT"
    SSL = "SSL"
    SASL_PLAINTEXT = "SASL_PLAINTEXT"
    SASL_SSL = "SASL_SSL"


class SaslMechanism(StrEnum):
    PLAIN = "PLAIN"
    SCRAM_SHA_256 = "SCRAM-SHA-256"
    SCRAM_SHA_512 = "SCRAM-SHA-512"


class ProcessingGuarantee(StrEnum):
    AT_LEAST_ONCE = "at_least_once"
    EXACTLY_ONCE = "exactly_once"


def default_cache_dir() -> Path:
    return Path.home() / ".cache" / "surge"


class Settings(BaseSettings):
    """Every setting the service reads; the env var is ``SURGE_`` + the upper-case name."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        frozen=True,
        hide_input_in_errors=True,  # validation errors would otherwise echo secrets
    )

    # Kafka connection
    kafka_bootstrap_servers: str = "127.0.0.1:9092"
    kafka_security_protocol: SecurityProtocol = SecurityProtocol.PLAINTEXT
    kafka_sasl_mechanism: SaslMechanism | None = None
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_ssl_cafile: Path | None = None
    kafka_ssl_certfile: Path | None = None
    kafka_ssl_keyfile: Path | None = None
    kafka_ssl_key_password: SecretStr | None = None

    # Topics
    topic_searches: str = "shop.searches"
    topic_cart_adds: str = "shop.cart-adds"
    topic_orders: str = "shop.orders"
    topic_dead_letters: str = "shop.dead-letters"
    topic_triggers: str = "replenish.triggers"
    topic_forecasts: str = "demand.forecasts"
    topic_calendar: str = "replenish.calendar"
    topic_partitions: int = Field(default=4, ge=1)
    publish_forecasts: bool = True

    # Worker
    app_id: str = "surge-replenishment"
    web_host: str = "127.0.0.1"
    web_port: int = Field(default=6066, ge=1, le=65535)
    data_dir: Path = Path("var/worker")
    store: str = "memory://"
    # Kafka static group membership (KIP-345): a stable id per worker, e.g. the pod name,
    # so a restarted worker gets its partitions back without a rebalance.
    group_instance_id: str | None = None
    standby_replicas: int = Field(default=0, ge=0)
    processing_guarantee: ProcessingGuarantee = ProcessingGuarantee.AT_LEAST_ONCE
    snapshot_hmac_key: SecretStr = SecretStr("change-me-in-production")
    commit_interval_seconds: float = Field(default=1.0, gt=0)
    max_fetch_bytes_per_partition: int = Field(default=1_048_576, ge=1024)
    log_level: str = "INFO"

    # Streaming worker additions (app/streaming, issue #6)
    topic_replication_factor: int = Field(default=1, ge=1)
    broker_session_timeout_seconds: float = Field(default=30.0, gt=0)
    broker_heartbeat_interval_seconds: float = Field(default=3.0, gt=0)
    # First tier in the worker: how often idle partitions run the planner (wall clock),
    # and how long before an event's start its pre-warm fires (DESIGN §6).
    idle_tick_seconds: float = Field(default=30.0, gt=0)
    # Event-time merge of a partition's input topics (app/streaming/merge.py): how many
    # events one topic of a partition may hold back before its oldest are released
    # anyway, and how often a partition holding events is looked at again without a batch.
    merge_hold_events: int = Field(default=100_000, ge=1)
    merge_tick_seconds: float = Field(default=0.5, gt=0)
    # How often a partition's changed SKU state is written to the changelog (SKUs that
    # triggered are written at once); offsets commit only up to the last write, so a
    # crash replays at most about this much input.
    state_write_interval_seconds: float = Field(default=5.0, gt=0)
    # exactly_once: the broker aborts a transaction left open this long (a worker that
    # died mid-transaction); readers of its partitions wait at most this long.
    transaction_timeout_seconds: float = Field(default=60.0, gt=0)
    pre_warm_lead_hours: float = Field(default=72.0, gt=0)

    # Decision windows; margins, minimum volumes and evidence live in the policy file
    window_seconds: int = Field(default=300, ge=1)
    grace_seconds: int = Field(default=60, ge=0)
    max_future_seconds: int = Field(default=86_400, ge=0)
    policy_file: Path | None = None
    calendar_file: Path | None = None

    # Local development broker
    cache_dir: Path = Field(default_factory=default_cache_dir)
    local_kafka_version: str = "4.1.1"
    local_kafka_port: int = Field(default=9092, ge=0, le=65535)
    local_kafka_controller_port: int = Field(default=0, ge=0, le=65535)
    local_kafka_heap: str = "512m"

    @model_validator(mode="after")
    def _sasl_needs_credentials(self) -> Settings:
        if self.kafka_security_protocol in (
            SecurityProtocol.SASL_SSL,
            SecurityProtocol.SASL_PLAINTEXT,
        ):
            if self.kafka_sasl_mechanism is None:
                raise ValueError("SASL security protocol needs SURGE_KAFKA_SASL_MECHANISM")
            if not self.kafka_sasl_username or self.kafka_sasl_password is None:
                raise ValueError(
                    "SASL needs SURGE_KAFKA_SASL_USERNAME and SURGE_KAFKA_SASL_PASSWORD"
                )
        return self

    @property
    def input_topics(self) -> dict[str, str]:
        """Input topic name to signal value."""
        return {
            self.topic_searches: "search",
            self.topic_cart_adds: "cart_add",
            self.topic_orders: "order",
        }

    def kafka_client_kwargs(self) -> dict[str, Any]:
        """Connection keywords for aiokafka clients, secrets revealed only here."""
        from ssl import create_default_context

        kwargs: dict[str, Any] = {
            "bootstrap_servers": self.kafka_bootstrap_servers,
            "security_protocol": self.kafka_security_protocol.value,
        }
        if self.kafka_security_protocol in (SecurityProtocol.SSL, SecurityProtocol.SASL_SSL):
            context = create_default_context(
                cafile=str(self.kafka_ssl_cafile) if self.kafka_ssl_cafile else None
            )
            if self.kafka_ssl_certfile:
                context.load_cert_chain(
                    str(self.kafka_ssl_certfile),
                    str(self.kafka_ssl_keyfile) if self.kafka_ssl_keyfile else None,
                    self.kafka_ssl_key_password.get_secret_value()
                    if self.kafka_ssl_key_password
                    else None,
                )
            kwargs["ssl_context"] = context
        if self.kafka_sasl_mechanism is not None:
            kwargs["sasl_mechanism"] = self.kafka_sasl_mechanism.value
            kwargs["sasl_plain_username"] = self.kafka_sasl_username
            kwargs["sasl_plain_password"] = (
                self.kafka_sasl_password.get_secret_value() if self.kafka_sasl_password else None
            )
        return kwargs


def load_settings(**overrides: Any) -> Settings:
    """Settings from the environment, with explicit overrides (for the CLI and tests)."""
    return Settings(**overrides)
