"""Errors that name the arguments to change, spelled for whoever called: Python keywords or command-line flags.

The library raises them with the Python spelling (``use_raw=True``); the command
line re-spells the same message with its own flags (``--use-raw``), so neither
side tells a user to type something it does not accept.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

_ANY = object()  # "some value": use_raw=... / --layer NAME


@dataclass(frozen=True)
class Arg:
    """One argument named in a message.

    Attributes
    ----------
    name
        The keyword argument, e.g. ``"use_raw"``.
    value
        The value to show with it; left out, the message names the argument with a placeholder.
    """

    name: str
    value: Any = _ANY

    def python(self) -> str:
        """``name=value`` (``name=...`` when no value is given)."""
        return f"{self.name}=..." if self.value is _ANY else f"{self.name}={self.value!r}"

    def flag(self, option: str) -> str:
        """As the command line's ``option``: ``--use-raw``, ``--no-use-raw``, ``--layer counts``, ``--layer NAME``."""
        if self.value is True:
            return option
        if self.value is False:
            return "--no-" + option.removeprefix("--")
        if self.value is _ANY:
            return f"{option} {self.name.upper()}"
        return f"{option} {self.value}"


class ArgumentHints:
    """Mixin for exceptions whose message names arguments (see :class:`HintedValueError`).

    Parameters
    ----------
    template
        The message, with ``{key}`` where each argument is named.
    **arguments
        ``key=Arg(...)`` for each placeholder.
    """

    def __init__(self, template: str, **arguments: Arg):
        self.template, self.arguments = template, arguments
        super().__init__(self.spelled())

    @property
    def argument_names(self) -> list[str]:
        """The keyword arguments the message names, in order, without repeats."""
        return list(dict.fromkeys(arg.name for arg in self.arguments.values()))

    def spelled(self, options: Mapping[str, str] | None = None) -> str:
        """The message with Python keywords, or with ``options`` (``{"use_raw": "--use-raw"}``) where given.

        An argument missing from ``options`` keeps its Python spelling.
        """
        options = options or {}
        words = {key: arg.flag(options[arg.name]) if arg.name in options else arg.python()
                 for key, arg in self.arguments.items()}
        return self.template.format(**words)


class HintedValueError(ArgumentHints, ValueError):
    """A ValueError whose message names arguments (``.spelled(options)`` re-spells them as flags)."""


class HintedKeyError(ArgumentHints, KeyError):
    """A KeyError whose message names arguments (``.spelled(options)`` re-spells them as flags)."""

    def __str__(self) -> str:  # KeyError would print the repr of its message
        return str(self.args[0])
