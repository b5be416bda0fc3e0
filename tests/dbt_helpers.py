"""dbt and DuckDB helpers shared by the tests that build the dbt project in-process."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import duckdb

DBT_DIR = Path(__file__).resolve().parents[1] / "dbt"


def dbt_build_args(work: Path, select: list[str], *options: str) -> list[str]:
    """The arguments of `dbt build --select ...` with its own target and log folders in ``work``,
    so it never touches dbt/target (the manifest Cosmos reads); ``options`` go before the selection."""
    return [
        "build",
        "--project-dir",
        str(DBT_DIR),
        "--profiles-dir",
        str(DBT_DIR),
        "--target-path",
        str(work / "dbt_target"),
        "--log-path",
        str(work / "dbt_logs"),
        *options,
        "--select",
        *select,
    ]


def dbt_build(work: Path, select: list[str]) -> dict:
    """`dbt build --select ...` in-process against $CIVIC_LAKE / $CIVIC_WAREHOUSE (``dbt_build_args``).
    Returns {node name: (status, failures)}."""
    from dbt.cli.main import dbtRunner

    result = dbtRunner().invoke(dbt_build_args(work, select))
    assert result.exception is None, result.exception
    nodes = {r.node.name: (str(r.status), r.failures) for r in result.result.results}
    assert result.success, {name: state for name, state in nodes.items() if state[0] not in ("success", "pass", "warn")}
    return nodes


@contextlib.contextmanager
def landed_and_built(
    work: Path,
    environment: Callable[[Path, Path], contextlib.AbstractContextManager],
    land: Callable[[Path], dict],
    select: list[str],
    amend: Callable[[Path], object] | None = None,
) -> Iterator[dict]:
    """A dbt module's warehouse in ``work``: inside ``environment(lake, warehouse)`` (a replay
    server with the source's connections pointed at it), ``land(lake)`` gives the manifests,
    ``amend(lake)`` writes into the landed blocks what the replay never publishes (and returns what
    it touched), then ``dbt_build(work, select)``. Yields ``{"server", "work", "lake", "warehouse",
    "manifests", "touched", "nodes", "timings"}`` (seconds to land and to build), the server
    running until the context ends."""
    lake, warehouse = work / "lake", work / "warehouse.duckdb"
    timings = {}
    with environment(lake, warehouse) as server:
        started = time.monotonic()
        manifests = land(lake)
        timings["land"] = time.monotonic() - started
        touched = amend(lake) if amend else None
        started = time.monotonic()
        nodes = dbt_build(work, select)
        timings["dbt_build"] = time.monotonic() - started
        yield {
            "server": server,
            "work": work,
            "lake": lake,
            "warehouse": warehouse,
            "manifests": manifests,
            "touched": touched,
            "nodes": nodes,
            "timings": timings,
        }


def query(warehouse: Path, sql: str) -> list[tuple]:
    # read-write, like dbt's own connection in this process (a read-only open would conflict with it)
    with duckdb.connect(str(warehouse)) as con:
        return con.sql(sql).fetchall()


def module_query(environment: dict, sql: str) -> list[tuple]:
    """``query`` of an end-to-end module's warehouse (``replay_env.module_environment``'s)."""
    return query(environment["data"] / "warehouse.duckdb", sql)
