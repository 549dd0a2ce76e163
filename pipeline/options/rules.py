"""What every option module shares: the usage error, the size parser and
the range rules each module states for its numeric options."""

from __future__ import annotations

from typing import Any, Callable, Sequence, Tuple

from fgbg.images import JPEG_QUALITY


class UsageError(ValueError):
    """A bad option: the message says which and how to fix it."""


def parse_size(text: str) -> Tuple[int, int]:
    """'640x480' -> (640, 480); '224' -> (224, 224)."""
    parts = text.lower().split("x")
    try:
        width, height = (int(part) for part in (parts * 2 if len(parts) == 1 else parts))
    except ValueError:
        raise UsageError(f"expected WIDTHxHEIGHT, got {text!r}") from None
    return width, height


Rule = Tuple[Callable[[float], bool], str]  # a test, and what the error says it wants
# An option's name, its test and what the error says it wants.
Range = Tuple[str, Callable[[float], bool], str]


def at_least(low: int) -> Rule:
    return (lambda value: value >= low), f">= {low}"


POSITIVE: Rule = ((lambda value: value > 0), "> 0")
FRACTION: Rule = ((lambda value: 0 <= value <= 1), "in 0..1")
QUALITY: Rule = (JPEG_QUALITY.__contains__, f"in {JPEG_QUALITY.start}..{JPEG_QUALITY.stop - 1}")


def check_ranges(opts: Any, ranges: Sequence[Range]) -> None:
    """Each named option's value passes its test, or a UsageError says what it must be."""
    for name, valid, expected in ranges:
        if not valid(getattr(opts, name)):
            raise UsageError(f"--{name} must be {expected}, got {getattr(opts, name)}")
