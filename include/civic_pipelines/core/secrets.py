"""Runtime secrets (a fetched OAuth token) registered with the log masker, with no Airflow here.

Inside an Airflow task the orchestration layer registers Airflow's masker when it is imported, so a
token a source fetches is redacted from the task log even if some library prints it; elsewhere
(the CLI, the extractor container) nothing logs through a masker and :func:`mask` does nothing.
"""

from __future__ import annotations

from collections.abc import Callable

_masker: Callable[[str], None] | None = None


def register_masker(masker: Callable[[str], None] | None) -> None:
    global _masker
    _masker = masker


def mask(secret: str) -> None:
    if _masker is None or not secret:
        return
    try:
        _masker(secret)
    except Exception:  # noqa: BLE001 - masking is a second line of defence; the code never logs secrets
        pass
