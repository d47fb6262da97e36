"""Text read from the system, made safe to show: no control characters reach a report.

A device-tree string, a sysfs attribute or a file name is data the board (or whoever wrote
its files) chose; printed raw, an ESC sequence in it drives the terminal and a newline
forges report lines. `clean` escapes every such character visibly (`\\x1b`, `\\u202e`).
"""

from __future__ import annotations

import re
from typing import Any

# C0 and C1 controls (with DEL), line/paragraph separators, and the bidirectional
# overrides and isolates that reorder what a terminal shows.
UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def clean(text: str) -> str:
    """`text` with every control character replaced by its escape; other text unchanged."""
    return UNSAFE.sub(_escape, text)


def clean_tree(value: Any) -> Any:
    """A copy of a JSON-like value (dicts, lists, strings, ...) with every string cleaned."""
    if isinstance(value, str):
        return clean(value)
    if isinstance(value, dict):
        return {clean_tree(key): clean_tree(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean_tree(item) for item in value]
    return value
