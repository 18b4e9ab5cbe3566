"""The glossary (``glossary.md`` beside this file, also the docs' glossary page) as HTML inside the report, so
a reader has the words explained on the page itself, with no link out of the file."""

from __future__ import annotations

import html
import re
from functools import lru_cache
from pathlib import Path

GLOSSARY = Path(__file__).with_name("glossary.md")
ANCHOR = "glossary"


def _inline(text: str) -> str:
    escaped = html.escape(text.replace("\\*", "\0"), quote=False)  # an escaped star is a literal star
    escaped = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", escaped)
    escaped = re.sub(r"\*(.+?)\*", r"<em>\1</em>", escaped)
    escaped = re.sub(r"`(.+?)`", r"<code>\1</code>", escaped)
    # links become their text: the report links nowhere
    return re.sub(r"\[(.+?)\]\([^)]*\)", r"\1", escaped).replace("\0", "*")


@lru_cache(maxsize=1)
def glossary_entries() -> list[tuple[str, str, str]]:
    """``(anchor, term, definition)`` of every entry of the glossary (MyST definition lists)."""
    entries, anchor, term, lines = [], "", None, []
    for line in GLOSSARY.read_text().splitlines():
        label = re.match(r"^\((glossary-[a-z0-9-]+)\)=$", line)
        if label or (line and not line.startswith((" ", ":")) and term is not None and lines):
            if term is not None:
                entries.append((anchor, term, " ".join(lines)))
            term, lines = None, []
            if label:
                anchor = label.group(1)
                continue
        if line.startswith(": "):
            lines.append(line[2:].strip())
        elif line.startswith("  ") and term is not None and lines:
            lines.append(line.strip())
        elif line and not line.startswith("#") and term is None and anchor:
            term = line.strip()
        elif not line and lines:
            lines.append("")
    if term is not None:
        entries.append((anchor, term, " ".join(lines)))
    return [(a, t, re.sub(r"\s+", " ", d).strip()) for a, t, d in entries if d]


def glossary_html() -> str:
    """The glossary section of the report."""
    items = "".join(f'<dt id="{a}">{_inline(t)}</dt><dd>{_inline(d)}</dd>' for a, t, d in glossary_entries())
    return f'<h2 id="{ANCHOR}">Glossary</h2><dl class="glossary">{items}</dl>'
