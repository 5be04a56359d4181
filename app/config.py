"""Settings from environment variables prefixed ``SURGE_`` (and an optional ``.env``).

Secrets are :class:`pydantic.SecretStr`: they print as ``**********`` in ``repr``, logs
and validation errors, and are revealed only where a Kafka client needs them.

:func:`load_settings` is what the command line uses: a value that does not parse becomes
a :class:`SettingsError` whose lines name the variable, the value and what is allowed
(the CLI prints them and exits 2), and a ``SURGE_*`` name that is no setting gets a
warning naming the closest setting.
"""

from __future__ import annotations

import difflib
import os
import re
import ssl
import sys
import types
import typing
from collections.abc import Iterable
from enum import Enum, StrEnum
from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

ENV_PREFIX = "SURGE_"
ENV_FILE = ".env"
#: ``SURGE_*`` variables that are not settings (tests, benchmarks, compose, tools).
OTHER_SURGE_NAMES = frozenset({"SURGE_IMAGE", "SURGE_TOOLS_DIR"})
OTHER_SURGE_PREFIXES = ("SURGE_FAULT_", "SURGE_TEST_", "SURGE_BENCH_")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
STORE_SCHEMES = ("memory://", "rocksdb://")
MIN_SNAPSHOT_KEY_CHARS = 16
#: The signing key older versions shipped as a default; it is public, so never accepted.
PUBLIC_OLD_DEFAULT_KEY = "change-me-in-production"
NEW_KEY_COMMAND = "python -c 'import secrets; print(secrets.token_urlsafe(32))'"
MISSING_SNAPSHOT_KEY = (
    "SURGE_SNAPSHOT_HMAC_KEY is not set: the worker signs the model snapshots it stores in "
    "Kafka with it and has no default, so set it to a secret of at least "
    f"{MIN_SNAPSHOT_KEY_CHARS} characters (e.g. from `{NEW_KEY_COMMAND}`) kept the same "
    "across restarts"
)

_TOPIC = re.compile(r"[A-Za-z0-9._-]{1,249}")
_APP_ID = re.compile(r"[A-Za-z0-9._-]{1,200}")
_HOST_PORT = re.compile(r"(?P<host>[A-Za-z0-9._-]+|\[[0-9A-Fa-f:.]+\]):(?P<port>[0-9]{1,5})")
_NO_SPACE = re.compile(r"\S{1,249}")
_KAFKA_VERSION = re.compile(r"[0-9]+\.[0-9]+\.[0-9]+")
_HEAP = re.compile(r"[1-9][0-9]*[kKmMgG]?")
_TOPIC_RULE = "a Kafka topic name: 1 to 249 letters, digits, '.', '_' or '-'"
_SECRET_RULE = "a non-empty secret (or unset)"

#: What a setting accepts, where its type alone does not say it well.
ALLOWED: dict[str, str] = {
    "kafka_bootstrap_servers": (
        "comma-separated HOST:PORT pairs with ports 1 to 65535, e.g. kafka-1:9092,kafka-2:9092"
    ),
    "kafka_sasl_username": "a non-empty user name (or unset)",
    "kafka_sasl_password": _SECRET_RULE,
    "kafka_ssl_key_password": _SECRET_RULE,
    "topic_searches": _TOPIC_RULE,
    "topic_cart_adds": _TOPIC_RULE,
    "topic_orders": _TOPIC_RULE,
    "topic_dead_letters": _TOPIC_RULE,
    "topic_triggers": _TOPIC_RULE,
    "topic_forecasts": _TOPIC_RULE,
    "topic_calendar": _TOPIC_RULE,
    "app_id": "1 to 200 letters, digits, '.', '_' or '-' (it names the group and topics)",
    "web_host": "a host name or IP address to bind, e.g. 127.0.0.1 or 0.0.0.0",
    "store": "memory:// or rocksdb://",
    "group_instance_id": (
        "1 to 249 letters, digits, '.', '_' or '-', e.g. the pod name (or unset)"
    ),
    "snapshot_hmac_key": (
        f"a secret of at least {MIN_SNAPSHOT_KEY_CHARS} characters, e.g. from `{NEW_KEY_COMMAND}`"
    ),
    "log_level": "one of " + ", ".join(LOG_LEVELS) + " (any case)",
    "local_kafka_version": "a Kafka release such as 4.1.1",
    "local_kafka_heap": "a JVM heap size such as 512m or 2g",
}


class SettingsError(ValueError):
    """Settings that cannot be used; each line names a variable, its value and what is allowed.

    >>> print(SettingsError(["SURGE_A='x' is not valid; allowed: a number"]))
    SURGE_A='x' is not valid; allowed: a number
    """

    def __init__(self, lines: Iterable[str]) -> None:
        self.lines = list(lines)
        super().__init__("\n".join(self.lines))


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


_SASL = (SecurityProtocol.SASL_SSL, SecurityProtocol.SASL_PLAINTEXT)
_TLS = (SecurityProtocol.SSL, SecurityProtocol.SASL_SSL)


def env_name(field_name: str) -> str:
    """The environment variable of a setting.

    >>> env_name("window_seconds")
    'SURGE_WINDOW_SECONDS'
    """
    return ENV_PREFIX + field_name.upper()


def default_cache_dir() -> Path:
    return Path.home() / ".cache" / "surge"


def _matches(pattern: re.Pattern[str], value: str) -> str:
    if pattern.fullmatch(value) is None:
        raise ValueError("does not match")
    return value


class Settings(BaseSettings):
    """Every setting the service reads; the env var is ``SURGE_`` + the upper-case name."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_file=ENV_FILE,
        env_file_encoding="utf-8",
        extra="ignore",
        frozen=True,
        allow_inf_nan=False,
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
    # No default: a known key would let anyone who can write the changelog forge the
    # pickled state the worker loads. Only the worker needs it (require_snapshot_key).
    snapshot_hmac_key: SecretStr | None = None
    commit_interval_seconds: float = Field(default=1.0, gt=0)
    max_fetch_bytes_per_partition: int = Field(default=1_048_576, ge=1024)
    # How long the broker may hold a fetch with no new records. aiokafka sends one fetch
    # per broker at a time, and a partition just drained must wait for the one in flight:
    # Faust's fixed 1,500 ms starved busy partitions behind quiet ones (p50 1.2 s at
    # 10,000 events/s). See docs/STREAMING.md.
    fetch_max_wait_ms: int = Field(default=50, ge=1, le=1500)
    log_level: str = "INFO"

    # Streaming worker additions (app/streaming, issue #6)
    topic_replication_factor: int = Field(default=1, ge=1)
    broker_session_timeout_seconds: float = Field(default=30.0, gt=0)
    broker_heartbeat_interval_seconds: float = Field(default=3.0, gt=0)
    # First tier in the worker: how often idle partitions run the planner (wall clock),
    # and how long before an event's start its pre-warm fires (docs/FIRST_TIER.md).
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
    # The worker spreads a window boundary's closes (a forecast record each) over this
    # long instead of pausing the events behind it (app/streaming/pacing.py). None: a
    # quarter of a window, at most 30 s; 0: close as fast as the engine's budget allows.
    close_drain_seconds: float | None = Field(default=None, ge=0)
    max_future_seconds: int = Field(default=86_400, ge=0)
    policy_file: Path | None = None
    calendar_file: Path | None = None

    # Local development broker
    cache_dir: Path = Field(default_factory=default_cache_dir)
    local_kafka_version: str = "4.1.1"
    local_kafka_port: int = Field(default=9092, ge=0, le=65535)
    local_kafka_controller_port: int = Field(default=0, ge=0, le=65535)
    local_kafka_heap: str = "512m"

    @field_validator("*", mode="before")
    @classmethod
    def _not_empty(cls, value: Any) -> Any:
        if isinstance(value, str) and not value.strip():
            raise ValueError("empty")
        return value

    @field_validator("kafka_bootstrap_servers")
    @classmethod
    def _host_ports(cls, value: str) -> str:
        for address in value.split(","):
            match = _HOST_PORT.fullmatch(address.strip())
            if match is None or not 1 <= int(match["port"]) <= 65535:
                raise ValueError(f"{address.strip()!r} is not HOST:PORT")
        return value

    @field_validator(
        "topic_searches",
        "topic_cart_adds",
        "topic_orders",
        "topic_dead_letters",
        "topic_triggers",
        "topic_forecasts",
        "topic_calendar",
    )
    @classmethod
    def _topic(cls, value: str) -> str:
        if value in {".", ".."}:
            raise ValueError("not a topic name")
        return _matches(_TOPIC, value)

    @field_validator("app_id")
    @classmethod
    def _app_id(cls, value: str) -> str:
        if value in {".", ".."}:
            raise ValueError("not a name")
        return _matches(_APP_ID, value)

    @field_validator("web_host")
    @classmethod
    def _no_space(cls, value: str) -> str:
        return _matches(_NO_SPACE, value)

    @field_validator("group_instance_id")
    @classmethod
    def _instance_id(cls, value: str | None) -> str | None:
        if value in {".", ".."}:  # Kafka refuses these as it does for topics
            raise ValueError("not a name")
        return value if value is None else _matches(_TOPIC, value)

    @field_validator("store")
    @classmethod
    def _store(cls, value: str) -> str:
        if not value.startswith(STORE_SCHEMES):
            raise ValueError("does not match")
        return value

    @field_validator("snapshot_hmac_key")
    @classmethod
    def _signing_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return None
        secret = value.get_secret_value()
        if secret == PUBLIC_OLD_DEFAULT_KEY:
            raise ValueError("the old built-in default is public")
        if len(secret) < MIN_SNAPSHOT_KEY_CHARS:
            raise ValueError(f"only {len(secret)} characters")
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _log_level(cls, value: Any) -> Any:
        if isinstance(value, str) and value.strip():
            if value.strip().upper() not in LOG_LEVELS:
                raise ValueError("does not match")
            return value.strip().upper()
        return value

    @field_validator("local_kafka_version")
    @classmethod
    def _kafka_version(cls, value: str) -> str:
        return _matches(_KAFKA_VERSION, value)

    @field_validator("local_kafka_heap")
    @classmethod
    def _heap(cls, value: str) -> str:
        return _matches(_HEAP, value)

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        protocol = self.kafka_security_protocol
        where = f"{env_name('kafka_security_protocol')}={protocol.value}"
        if protocol in _SASL:
            if self.kafka_sasl_mechanism is None:
                raise ValueError(
                    f"{where} needs {env_name('kafka_sasl_mechanism')} (one of "
                    + ", ".join(m.value for m in SaslMechanism)
                    + ")"
                )
            if not self.kafka_sasl_username or self.kafka_sasl_password is None:
                raise ValueError(
                    f"{where} needs {env_name('kafka_sasl_username')} and "
                    f"{env_name('kafka_sasl_password')}"
                )
        else:
            stray = [
                env_name(name)
                for name in ("kafka_sasl_mechanism", "kafka_sasl_username", "kafka_sasl_password")
                if getattr(self, name) is not None
            ]
            if stray:
                raise ValueError(
                    f"{', '.join(stray)} set, but {where} does not use SASL: set "
                    f"{env_name('kafka_security_protocol')} to SASL_SSL or SASL_PLAINTEXT"
                )
        tls_files = ("kafka_ssl_cafile", "kafka_ssl_certfile", "kafka_ssl_keyfile")
        if protocol not in _TLS:
            stray = [
                env_name(name)
                for name in (*tls_files, "kafka_ssl_key_password")
                if getattr(self, name) is not None
            ]
            if stray:
                raise ValueError(
                    f"{', '.join(stray)} set, but {where} does not use TLS: set "
                    f"{env_name('kafka_security_protocol')} to SSL or SASL_SSL"
                )
        for name in ("kafka_ssl_keyfile", "kafka_ssl_key_password"):
            if getattr(self, name) is not None and self.kafka_ssl_certfile is None:
                raise ValueError(
                    f"{env_name(name)} is set without {env_name('kafka_ssl_certfile')} "
                    "(the client certificate it belongs to)"
                )
        if self.broker_heartbeat_interval_seconds >= self.broker_session_timeout_seconds:
            raise ValueError(
                f"{env_name('broker_heartbeat_interval_seconds')}="
                f"{self.broker_heartbeat_interval_seconds:g} must be below "
                f"{env_name('broker_session_timeout_seconds')}="
                f"{self.broker_session_timeout_seconds:g} (Kafka wants about a third of it)"
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

    def require_snapshot_key(self) -> bytes:
        """The snapshot signing key; :class:`SettingsError` if there is none (the worker's)."""
        if self.snapshot_hmac_key is None:
            raise SettingsError([MISSING_SNAPSHOT_KEY])
        return self.snapshot_hmac_key.get_secret_value().encode()

    def ssl_context(self) -> ssl.SSLContext:
        """The TLS context of the Kafka clients; :class:`SettingsError` names a bad file."""
        cafile, certfile, keyfile = (
            self.kafka_ssl_cafile,
            self.kafka_ssl_certfile,
            self.kafka_ssl_keyfile,
        )
        for name, path in (
            ("kafka_ssl_cafile", cafile),
            ("kafka_ssl_certfile", certfile),
            ("kafka_ssl_keyfile", keyfile),
        ):
            if path is not None and not path.is_file():
                problem = "is a directory" if path.is_dir() else "does not exist"
                raise SettingsError([f"{env_name(name)}={path}: the file {problem}"])
        try:
            context = ssl.create_default_context(cafile=str(cafile) if cafile else None)
        except ssl.SSLError as exc:
            raise SettingsError(
                [
                    f"{env_name('kafka_ssl_cafile')}={cafile}: not a PEM file of CA "
                    f"certificates ({exc.reason or exc})"
                ]
            ) from None
        if certfile is not None:
            password = self.kafka_ssl_key_password
            try:
                context.load_cert_chain(
                    str(certfile),
                    str(keyfile) if keyfile else None,
                    password.get_secret_value() if password else None,
                )
            except ssl.SSLError as exc:
                names = [f"{env_name('kafka_ssl_certfile')}={certfile}"]
                if keyfile is not None:
                    names.append(f"{env_name('kafka_ssl_keyfile')}={keyfile}")
                raise SettingsError(
                    [
                        f"{', '.join(names)}: cannot load the client certificate and key "
                        f"({exc.reason or exc}); a PEM certificate and its key are needed"
                        + (f", and {env_name('kafka_ssl_key_password')} if the key is encrypted")
                    ]
                ) from None
        return context

    def kafka_client_kwargs(self) -> dict[str, Any]:
        """Connection keywords for aiokafka clients, secrets revealed only here."""
        kwargs: dict[str, Any] = {
            "bootstrap_servers": self.kafka_bootstrap_servers,
            "security_protocol": self.kafka_security_protocol.value,
        }
        if self.kafka_security_protocol in _TLS:
            kwargs["ssl_context"] = self.ssl_context()
        if self.kafka_sasl_mechanism is not None:
            kwargs["sasl_mechanism"] = self.kafka_sasl_mechanism.value
            kwargs["sasl_plain_username"] = self.kafka_sasl_username
            kwargs["sasl_plain_password"] = (
                self.kafka_sasl_password.get_secret_value() if self.kafka_sasl_password else None
            )
        return kwargs

    def connection_problem(self, exc: BaseException) -> str | None:
        """A TLS or SASL failure talking to Kafka, said with the settings to check; else None."""
        kind = type(exc).__name__
        servers = self.kafka_bootstrap_servers
        if isinstance(exc, ssl.SSLError):
            return (
                f"TLS with {servers} failed ({exc}); check {env_name('kafka_ssl_cafile')}"
                f"={self.kafka_ssl_cafile or '(system CAs)'} and the broker's certificate"
            )
        if kind == "UnsupportedSaslMechanismError":
            mechanism = self.kafka_sasl_mechanism.value if self.kafka_sasl_mechanism else None
            return (
                f"the broker at {servers} does not offer {env_name('kafka_sasl_mechanism')}"
                f"={mechanism} ({exc})"
            )
        if "Sasl" in kind or "Authentication" in kind:
            return (
                f"SASL authentication at {servers} as {env_name('kafka_sasl_username')}="
                f"{self.kafka_sasl_username!r} failed ({exc}); check it, "
                f"{env_name('kafka_sasl_password')} and {env_name('kafka_sasl_mechanism')}"
            )
        return None


def _field_types(annotation: Any) -> tuple[Any, bool]:
    """The non-None type of a field and whether it may be unset."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        kinds = [k for k in typing.get_args(annotation) if k is not type(None)]
        return kinds[0], len(kinds) < len(typing.get_args(annotation))
    return annotation, False


def allowed_values(field_name: str) -> str:
    """What a setting accepts, in words.

    >>> allowed_values("web_port")
    'a whole number >= 1 and <= 65535'
    >>> allowed_values("kafka_security_protocol")
    'one of PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL'
    >>> allowed_values("calendar_file")
    'a file path (or unset)'
    """
    if field_name in ALLOWED:
        return ALLOWED[field_name]
    info = Settings.model_fields[field_name]
    kind, optional = _field_types(info.annotation)
    if isinstance(kind, type) and issubclass(kind, Enum):
        text = "one of " + ", ".join(str(member.value) for member in kind)
    elif kind is bool:
        text = "true or false"
    elif kind is int:
        text = "a whole number"
    elif kind is float:
        text = "a number"
    elif kind is Path:
        text = "a file path" if field_name.endswith("_file") else "a directory path"
    else:
        text = "text"
    bounds = [
        f"{symbol} {getattr(item, attr):g}"
        for item in info.metadata
        for attr, symbol in (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<="))
        if getattr(item, attr, None) is not None
    ]
    if bounds:
        text += " " + " and ".join(bounds)
    return text + (" (or unset)" if optional else "")


def _shown(field_name: str, value: Any) -> str:
    info = Settings.model_fields.get(field_name)
    if info is not None and _field_types(info.annotation)[0] is SecretStr:
        return "(hidden)"
    if isinstance(value, SecretStr):
        return "(hidden)"
    return repr(value) if isinstance(value, str) else repr(str(value))


def describe_errors(error: ValidationError) -> list[str]:
    """One line per problem: the variable, its value (secrets hidden) and what is allowed."""
    lines: list[str] = []
    for item in error.errors(include_url=False):
        location = item.get("loc") or ()
        message = str(item.get("msg", "")).removeprefix("Value error, ")
        field_name = str(location[0]) if location else ""
        if field_name not in Settings.model_fields:  # a check across settings: says it all
            lines.append(message)
            continue
        line = f"{env_name(field_name)}={_shown(field_name, item.get('input'))} is not valid"
        if item.get("type") == "value_error" and message not in {"empty", "does not match"}:
            line += f" ({message})"
        lines.append(f"{line}; allowed: {allowed_values(field_name)}")
    return lines


def _dotenv_names(path: Path) -> list[str]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return []
    found = (
        re.match(r"\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=", line)
        for line in text.splitlines()
    )
    return [match[1] for match in found if match]


def unknown_names(names: Iterable[str]) -> list[tuple[str, str | None]]:
    """``SURGE_*`` names that are no setting, each with the closest setting's name (or None).

    >>> unknown_names(["SURGE_WINDOW_SECOND", "SURGE_WEB_PORT", "PATH", "SURGE_FAULT_SEED"])
    [('SURGE_WINDOW_SECOND', 'SURGE_WINDOW_SECONDS')]
    """
    known = [env_name(name) for name in Settings.model_fields]
    found: list[tuple[str, str | None]] = []
    for name in sorted(set(names)):
        upper = name.upper()
        if (
            not upper.startswith(ENV_PREFIX)
            or upper in known
            or upper in OTHER_SURGE_NAMES
            or upper.startswith(OTHER_SURGE_PREFIXES)
        ):
            continue
        close = difflib.get_close_matches(upper, known, n=1, cutoff=0.6)
        found.append((name, close[0] if close else None))
    return found


_warned: set[str] = set()


def warn_unknown_names() -> None:
    """Warn (stderr, once per name) about ``SURGE_*`` names in the environment or ``.env``."""
    for name, close in unknown_names([*os.environ, *_dotenv_names(Path(ENV_FILE))]):
        if name in _warned:
            continue
        _warned.add(name)
        hint = f"did you mean {close}? " if close else ""
        print(
            f"surge: warning: {name} is not a setting and is ignored ({hint}see app/config.py)",
            file=sys.stderr,
        )


def load_settings(**overrides: Any) -> Settings:
    """Settings from the environment, with explicit overrides (for the CLI and tests).

    Raises :class:`SettingsError` (one line per bad value) instead of pydantic's report.
    """
    warn_unknown_names()
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise SettingsError(describe_errors(exc)) from None
