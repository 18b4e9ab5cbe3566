"""The ``sctranscoder`` command."""

from __future__ import annotations

import logging
import sys
import warnings

from .._hints import ArgumentHints
from .._runconfig import read_run_config
from ._commands import UsageError, cmd_circuits, cmd_evaluate, cmd_harvest, cmd_plan, cmd_sentences, cmd_train
from ._model_commands import cmd_predict, cmd_train_model
from ._parser import build_parser
from ._quickstart import cmd_quickstart
from ._report_commands import cmd_enrich, cmd_report

COMMANDS = {"sentences": cmd_sentences, "plan": cmd_plan, "harvest": cmd_harvest, "train": cmd_train, "evaluate": cmd_evaluate,
            "circuits": cmd_circuits, "enrich": cmd_enrich, "report": cmd_report, "quickstart": cmd_quickstart,
            "train-model": cmd_train_model, "predict": cmd_predict}


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


def _flags(command: str) -> dict[str, str]:
    """``{keyword argument: its long option}`` for one subcommand (``use_raw`` -> ``--use-raw``).

    A flag's dest is the keyword the command passes it as (``args.use_raw`` goes to ``use_raw=``).
    """
    _, subs = build_parser()
    if command not in subs:
        return {}
    return {action.dest: next(o for o in action.option_strings if o.startswith("--") and not o.startswith("--no-"))
            for action in subs[command]._actions
            if any(o.startswith("--") and not o.startswith("--no-") for o in action.option_strings)}


def _message(error: Exception, command: str) -> str:
    """The error's message for the command line: arguments named as this subcommand's flags."""
    if isinstance(error, ArgumentHints):
        flags = _flags(command)
        missing = ["--" + name.replace("_", "-") for name in error.argument_names if name not in flags]
        note = (f" sctranscoder {command} has no {' or '.join(missing)} option (those are Python "
                "arguments): change the .h5ad instead.") if missing else ""
        return error.spelled(flags) + note
    return error.args[0] if isinstance(error, KeyError) and error.args else str(error)


def main(argv: list[str] | None = None) -> int:
    command = "sctranscoder"
    try:
        args = _parse(argv)
        command = args.command
        logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
        with warnings.catch_warnings():
            # the library's warnings (unknown genes, an unconverged transcoder) as one plain line each
            warnings.showwarning = lambda message, *_, **__: print(
                f"sctranscoder {command}: warning: {message}", file=sys.stderr)
            COMMANDS[args.command](args)
    except (UsageError, ValueError, KeyError, OSError) as error:
        print(f"sctranscoder {command}: error: {_message(error, command)}", file=sys.stderr)
        return 2
    return 0


__all__ = ["main"]
