"""dbt and DuckDB helpers shared by the tests that build the dbt project in-process."""

from __future__ import annotations

from pathlib import Path

import duckdb

DBT_DIR = Path(__file__).resolve().parents[1] / "dbt"


def dbt_build(work: Path, select: list[str]) -> dict:
    """`dbt build --select ...` in-process against $CIVIC_LAKE / $CIVIC_WAREHOUSE. Its own target and
    log folders, so it never touches dbt/target (the manifest Cosmos reads). Returns
    {node name: (status, failures)}."""
    from dbt.cli.main import dbtRunner

    args = [
        "build",
        "--project-dir",
        str(DBT_DIR),
        "--profiles-dir",
        str(DBT_DIR),
        "--target-path",
        str(work / "dbt_target"),
        "--log-path",
        str(work / "dbt_logs"),
        "--select",
        *select,
    ]
    result = dbtRunner().invoke(args)
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
