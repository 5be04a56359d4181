"""``surge worker``: run the streaming service until SIGTERM/SIGINT."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any

from app.config import LOG_LEVELS, Settings, SettingsError, load_settings

logger = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--bootstrap",
        metavar="HOST:PORT[,...]",
        help="Kafka bootstrap servers (overrides SURGE_KAFKA_BOOTSTRAP_SERVERS)",
    )
    parser.add_argument(
        "--web-port", type=int, help="port of /metrics, /health, /ready (SURGE_WEB_PORT)"
    )
    parser.add_argument("--web-host", help="address the web port binds (SURGE_WEB_HOST)")
    parser.add_argument("--app-id", help="consumer group and state prefix (SURGE_APP_ID)")
    parser.add_argument("--store", help="table store: memory:// or rocksdb:// (SURGE_STORE)")
    parser.add_argument("--data-dir", help="directory for RocksDB state (SURGE_DATA_DIR)")
    parser.add_argument(
        "--log-level",
        type=str.upper,
        choices=LOG_LEVELS,
        help="log level of the service (SURGE_LOG_LEVEL)",
    )


def settings_from_args(args: argparse.Namespace) -> Settings:
    """Settings from the environment with the command-line overrides applied."""
    overrides: dict[str, Any] = {}
    for option, field_name in (
        ("bootstrap", "kafka_bootstrap_servers"),
        ("web_port", "web_port"),
        ("web_host", "web_host"),
        ("app_id", "app_id"),
        ("store", "store"),
        ("data_dir", "data_dir"),
        ("log_level", "log_level"),
    ):
        value = getattr(args, option, None)
        if value is not None:
            overrides[field_name] = value
    return load_settings(**overrides)


def run(args: argparse.Namespace) -> int:
    # Settings first (a bad one is a SettingsError: the CLI prints it and exits 2), and
    # before Faust is imported, so that a refusal is quick.
    settings = settings_from_args(args)
    settings.require_snapshot_key()  # no default signing key: refuse to start without one
    settings.kafka_client_kwargs()  # TLS files are read here: a bad one is named now

    # Imported here so that `surge --help` does not pay for Faust.
    import faust

    from app.runtime import tune_gc
    from app.streaming.app import (
        ConfigurationError,
        SurgeWorker,
        prepare_topics,
        quiet_framework_loggers,
    )

    tune_gc()  # the engine's state is long-lived: fewer full collections, shorter pauses
    try:
        service = SurgeWorker(settings)
        prepare_topics(settings)
    except (ConfigurationError, SettingsError) as exc:
        print(f"surge worker: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # the broker did not answer: let the supervisor restart us
        problem = settings.connection_problem(exc)
        if problem is not None:  # TLS or SASL refused: restarting will not help
            print(f"surge worker: {problem}", file=sys.stderr)
            return 2
        print(
            f"surge worker: cannot prepare the internal topics at "
            f"{settings.kafka_bootstrap_servers}: {exc!r}",
            file=sys.stderr,
        )
        return 1

    class Worker(faust.Worker):
        def on_setup_root_logger(self, root: logging.Logger, level: int) -> None:
            super().on_setup_root_logger(root, level)
            quiet_framework_loggers()

    worker = Worker(service.app, loglevel=settings.log_level.upper(), quiet=True)
    try:
        worker.execute_from_commandline()  # always ends with SystemExit
    except SystemExit as exc:
        code = exc.code
    return code if isinstance(code, int) else (0 if code is None else 1)
