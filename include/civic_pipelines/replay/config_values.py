"""Values of a ``/_replay/config`` section that several emulators take alike.

Every emulator's ``configure`` refuses a bad value with a ValueError (the server answers 400)
before it changes anything the value governs; these helpers keep those checks and messages one.
"""

from __future__ import annotations

from collections.abc import Callable


def whole_number(name: str, value, minimum: int = 0) -> int:
    """``value`` when it is an integer (not a bool) of at least ``minimum``."""
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}")
    return value


def late_edit_list(value, usage: str = '{"month": "YYYY-MM", "n": N}') -> list[dict]:
    """A ``late_edits`` value as a list of edits (a single edit may come bare), each a dict with
    a ``month``; ``usage`` is the shape the emulator's error message shows."""
    edits = value if isinstance(value, list) else [value]
    for edit in edits:
        if not isinstance(edit, dict) or "month" not in edit:
            raise ValueError(f"late_edits needs {usage}")
    return edits


def apply_settings(config: dict, setters: dict[str, Callable]) -> None:
    """Call the setter of each key the section gives, with its value, in ``setters``' order."""
    for key, setter in setters.items():
        if key in config:
            setter(config[key])
