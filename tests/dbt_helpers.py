"""dbt and DuckDB helpers shared by the tests that build the dbt project in-process."""

from __future__ import annotations

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


def query(warehouse: Path, sql: str) -> list[tuple]:
    # read-write, like dbt's own connection in this process (a read-only open would conflict with it)
    with duckdb.connect(str(warehouse)) as con:
        return con.sql(sql).fetchall()


def module_query(environment: dict, sql: str) -> list[tuple]:
    """``query`` of an end-to-end module's warehouse (``replay_env.module_environment``'s)."""
    return query(environment["data"] / "warehouse.duckdb", sql)
