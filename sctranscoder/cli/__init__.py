"""The ``sctranscoder`` command."""

from __future__ import annotations

import logging
import sys

from .._runconfig import read_run_config
from ._commands import UsageError, cmd_circuits, cmd_evaluate, cmd_harvest, cmd_sentences, cmd_train
from ._parser import build_parser
from ._quickstart import cmd_quickstart
from ._report_commands import cmd_enrich, cmd_report

COMMANDS = {"sentences": cmd_sentences, "harvest": cmd_harvest, "train": cmd_train, "evaluate": cmd_evaluate,
            "circuits": cmd_circuits, "enrich": cmd_enrich, "report": cmd_report, "quickstart": cmd_quickstart}


def _parse(argv):
    parser, subs = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "config", None) is not None:
        section = read_run_config(args.config, args.command)
        known = {action.dest for action in subs[args.command]._actions}
        unknown = sorted(set(section) - known)
        if unknown:
            raise UsageError(f"{args.config}: unknown settings for {args.command}: {', '.join(unknown)}")
        subs[args.command].set_defaults(**section)  # the file's values, unless given on the command line
        args = parser.parse_args(argv)
    return args


def main(argv: list[str] | None = None) -> int:
    command = "sctranscoder"
    try:
        args = _parse(argv)
        command = args.command
        logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
        COMMANDS[args.command](args)
    except (UsageError, ValueError, KeyError, OSError) as error:
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        print(f"sctranscoder {command}: error: {message}", file=sys.stderr)
        return 2
    return 0


__all__ = ["main"]
