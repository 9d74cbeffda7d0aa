"""Text that callers or service code chose, made safe to store and to print on a terminal."""

from __future__ import annotations

AUDIT_TARGET_MAX_CHARS = 200  # callers choose paths: an audit row's target is capped (gateway and control API)


def printable(text: str, max_chars: int | None = None, keep: str = "") -> str:
    """``text`` with no control or format character (ANSI escapes, bidi overrides, line breaks,
    except those in ``keep``): each is written as ``\\x1b``, ``\\u202e``...; past ``max_chars``
    it is cut, and the cut marked with "…" (never inside an escape)."""
    pieces: list[str] = []
    length = 0
    for char in text:
        piece = char if char.isprintable() or char in keep else ascii(char)[1:-1]
        pieces.append(piece)
        length += len(piece)
        if max_chars is not None and length > max_chars:
            break
    if max_chars is None or length <= max_chars:
        return "".join(pieces)
    while length > max_chars - 1:  # room for the mark
        length -= len(pieces.pop())
    return "".join(pieces) + "…"


def for_terminal(text: object, keep: str = "\n") -> str:
    """``text`` for a rich console: no control character, and no rich markup (``[red]``, ``[/x]``)."""
    from rich.markup import escape  # lazily: the gateway uses this module, not rich

    return escape(printable(str(text), keep=keep))
