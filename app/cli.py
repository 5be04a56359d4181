"""The ``surge`` command line: subcommands only, wiring to the packages that do the work."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

#: Exit code of a setting that cannot be used (as argparse uses for a bad option).
EXIT_BAD_SETTINGS = 2

# name -> (module with add_arguments(parser) and run(args) -> int, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "kafka": ("app.localkafka.commands", "run a local single-node Kafka (KRaft): up|down|status"),
    "replay": (
        "app.replay.commands",
        "replay event logs offline through the decision core; report",
    ),
    "worker": ("app.streaming.commands", "run the Faust worker (the streaming service)"),
    "generate": (
        "app.traffic.generate",
        "produce realistic shop traffic to the three input topics",
    ),
    "scenario": (
        "app.traffic.scenario_command",
        "write a planted-truth event log and its truth (score it with replay --truth)",
    ),
    "demo": (
        "app.traffic.demo",
        "start Kafka, the worker and the generator locally and print triggers as they arrive",
    ),
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser; only the chosen subcommand's module is imported (faster, and isolated)."""
    parser = argparse.ArgumentParser(
        prog="surge",
        description="Real-time replenishment triggers from searches, cart adds and orders.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module_name, help_text) in COMMANDS.items():
        subparser = sub.add_parser(name, help=help_text, description=help_text)
        if name == command:
            module = importlib.import_module(module_name)
            module.add_arguments(subparser)
            subparser.set_defaults(_module=module)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    command = next((arg for arg in args_list if not arg.startswith("-")), None)
    args = build_parser(command).parse_args(args_list)
    from app.config import SettingsError  # here: `surge --help` need not import pydantic

    try:
        code: int = args._module.run(args)
    except SettingsError as error:  # a bad SURGE_* value: say which and what is allowed
        for line in error.lines:
            print(f"surge {args.command}: {line}", file=sys.stderr)
        return EXIT_BAD_SETTINGS
    return code


if __name__ == "__main__":
    sys.exit(main())
