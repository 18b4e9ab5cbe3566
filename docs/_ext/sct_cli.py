"""The command-line reference, generated from the argparse parser (``sctranscoder.cli._parser.build_parser``).

``sct-cli`` expands to one section per subcommand: what it does, its usage line, a table of its
arguments (with defaults and help as ``--help`` shows them) and its example.
"""

from __future__ import annotations

import argparse

from docutils import nodes
from docutils.statemachine import StringList
from sphinx.util.docutils import SphinxDirective
from sphinx.util.nodes import nested_parse_with_titles


def build():
    """(main parser, {subcommand: parser})."""
    from sctranscoder.cli._parser import build_parser

    return build_parser()


def _cell(text) -> str:
    """Plain text, safe inside reStructuredText: markup characters escaped, one line."""
    text = " ".join(str(text).split())
    for char in "\\*`|_":
        text = text.replace(char, "\\" + char)
    return text


def _names(action: argparse.Action) -> str:
    if not action.option_strings:
        return f"``{action.dest}``"
    names = ", ".join(f"``{s}``" for s in action.option_strings)
    if action.nargs != 0 and not isinstance(action, argparse.BooleanOptionalAction):
        names += f" ``{action.metavar or action.dest.upper()}``"
    return names


def _default(action: argparse.Action) -> str:
    if not action.option_strings or action.default in (None, argparse.SUPPRESS) or action.nargs == 0:
        return ""
    if action.default == "":
        return '""'
    return f"``{action.default}``"


def _help(parser, action: argparse.Action) -> str:
    text = action.help or ""
    if text == argparse.SUPPRESS:
        return ""
    if "%" in text:  # argparse's own expansion, as --help shows it
        text = parser._get_formatter()._expand_help(action)
    if action.choices is not None and not isinstance(action, argparse._SubParsersAction):
        text = f"one of {', '.join(map(str, action.choices))}. {text}".strip()
    return _cell(text)


def _arguments(parser) -> list[str]:
    rows = [a for a in parser._actions if not isinstance(a, (argparse._HelpAction, argparse._SubParsersAction))]
    if not rows:
        return []
    lines = [".. list-table::", "   :header-rows: 1", "   :widths: 30 15 55", "",
             "   * - argument", "     - default", "     - meaning"]
    for action in rows:
        lines += [f"   * - {_names(action)}", f"     - {_default(action)}", f"     - {_help(parser, action)}"]
    return lines + [""]


def _literal(text: str) -> list[str]:
    return ["::", ""] + [f"   {line}" for line in text.rstrip().splitlines()] + [""]


def cli_lines() -> list[str]:
    parser, subs = build()
    lines = _literal(parser.format_usage()) + _arguments(parser)
    helps = {a.dest: a.help for a in parser._subparsers._group_actions[0]._choices_actions}
    for name, sub in subs.items():
        title = f"sctranscoder {name}"
        lines += [title, "-" * len(title), "", _cell(helps.get(name, "")), ""]
        lines += _literal(sub.format_usage()) + _arguments(sub)
        if sub.epilog:
            lines += ["Example:", ""] + _literal(sub.epilog.replace("example:", "").strip())
    return lines


class CliDirective(SphinxDirective):
    def run(self):
        node = nodes.section()
        node.document = self.state.document
        nested_parse_with_titles(self.state, StringList(cli_lines(), source="<sctranscoder.cli._parser>"), node)
        return node.children


def setup(app):
    app.add_directive("sct-cli", CliDirective)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
