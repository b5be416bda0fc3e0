"""Which blocks a run lands: the planner's rules, with no Airflow in them.

One place decides what may be asked for (a month range or the run's data interval, the parts of a
multi-part source, the limits per run) and how a refusal reads. The DAG's ``plan_blocks`` task
calls :func:`plan` and turns a :class:`PlanError` into ``AirflowFailException``; ``civic extract``
calls :func:`validate_month` and prints the same line. So the command line refuses exactly what the
planner refuses (a month not complete yet, one before the source's first month, a malformed one).
"""

from __future__ import annotations

import json
from datetime import datetime

from civic_pipelines import sources
from civic_pipelines.core.variables import get_variable
from civic_pipelines.months import BlockPlanError, plan_months

DEFAULT_MAX_MAP_LENGTH = 1024  # Airflow's [core] max_map_length default


class PlanError(ValueError):
    """A request the planner refuses; the message is one line, ``cannot plan <source> blocks: <why>``."""

    def __init__(self, source: str, reason: str) -> None:
        super().__init__(f"cannot plan {source} blocks: {reason}")
        self.source = source
        self.reason = reason


def enabled_parts(spec, chosen: list[str] | None = None) -> list[str]:
    """The parts (tables, providers) a multi-part source lands: all of ``sources.parts()`` by
    default, or those in the Airflow Variable ``civic_<name>_parts`` (a JSON list, e.g.
    ``["permit"]``), narrowed to ``chosen`` (the trigger form's list) when given."""
    universe = sources.parts(spec.name)
    value = get_variable(f"civic_{spec.name}_parts", None)
    enabled = list(universe)
    if value not in (None, ""):
        listed = json.loads(value) if isinstance(value, str) else list(value)
        unknown = [part for part in listed if part not in universe]
        if unknown or not listed:
            raise ValueError(f"civic_{spec.name}_parts must be a non-empty JSON list of {universe}, not {value!r}")
        enabled = [part for part in universe if part in listed]
    if chosen:
        unknown = [part for part in chosen if part not in universe]
        if unknown:
            raise ValueError(f"unknown {spec.parts_param or 'parts'} {unknown}; known: {universe}")
        enabled = [part for part in enabled if part in chosen]
    return enabled


def landed_incomplete(lake: str | None, block: dict) -> bool:
    """The Austin run tool's --incomplete-only: a block landed incomplete (hours the provider had
    not published yet) or never landed, from the lake's manifest."""
    from civic_pipelines import settings
    from civic_pipelines.lake import BlockLocation, read_manifest

    manifest = read_manifest(
        BlockLocation(lake or settings.lake_url(), block["source"], block["month"], block.get("part"))
    )
    return manifest is None or manifest.get("complete") is False


def validate_month(spec, month: str, now: datetime | None = None) -> str:
    """``month`` as one block of ``spec``'s source, checked as the planner checks a trigger's range
    (``start_month = end_month = month``); raises :class:`PlanError` with the planner's message."""
    try:
        plan_months(month, month, None, None, first_month=spec.first_month, max_blocks=spec.max_blocks_per_run, now=now)
    except BlockPlanError as error:
        raise PlanError(spec.name, str(error)) from None
    return month


def validate_part(spec, part: str | None) -> str | None:
    """A part named on the command line, checked as the planner checks the trigger form's list
    (an unknown one is refused with the planner's message; a source without parts takes none)."""
    if part is None or not sources.parts(spec.name):
        return part
    try:
        enabled_parts(spec, [part])
    except ValueError as error:
        raise PlanError(spec.name, str(error)) from None
    return part


def plan(
    spec,
    params: dict | None = None,
    interval_start: datetime | None = None,
    interval_end: datetime | None = None,
    *,
    now: datetime | None = None,
    max_map_length: int = DEFAULT_MAX_MAP_LENGTH,
    lake: str | None = None,
) -> tuple[list[dict], list[str]]:
    """The blocks a run lands, from the trigger form's ``params`` (``start_month``/``end_month``,
    ``force``, the parts list, ``incomplete_only``), else from the run's data interval.

    Returns ``(blocks, months)``; raises :class:`PlanError`. ``incomplete_only`` keeps the blocks
    that ``lake``'s manifests say are incomplete or never landed.
    """
    name = spec.name
    params = params or {}
    try:
        months = plan_months(
            params.get("start_month") or None,
            params.get("end_month") or None,
            interval_start,
            interval_end,
            first_month=spec.first_month,
            max_blocks=spec.max_blocks_per_run,
            now=now,
        )
    except BlockPlanError as error:
        raise PlanError(name, str(error)) from None
    force = bool(params.get("force"))
    parts = [None]
    if spec.has_parts:
        try:
            parts = enabled_parts(spec, params.get(spec.parts_param) if spec.parts_param else None)
        except ValueError as error:
            raise PlanError(name, str(error)) from None
        blocks = [
            {"source": name, "part": part, "month": month, "force": force, "label": f"{name} {part} {month}"}
            for month in months
            for part in parts
        ]
    else:
        blocks = [{"source": name, "month": month, "force": force, "label": f"{name} {month}"} for month in months]
    if params.get("incomplete_only"):
        blocks = [block for block in blocks if landed_incomplete(lake, block)]
    if len(blocks) > max_map_length:
        # Airflow would refuse to expand extract_load anyway, with a message about XCom lengths.
        per = (
            f" ({len(months)} months x {len(parts)} {spec.parts_param or 'parts'})"
            if len(blocks) == len(months) * len(parts) > len(months)
            else ""
        )
        raise PlanError(
            name,
            f"{len(blocks)} blocks{per} exceed Airflow's limit of {max_map_length} mapped "
            "tasks per run ([core] max_map_length): split the range into several runs",
        )
    return blocks, months
