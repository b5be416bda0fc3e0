"""The PostgreSQL sink against a real server (the session's throwaway cluster, see conftest): bulk
COPY, exact mirroring of re-landed blocks, one transaction per block, no secret in any log, and the
DAG's ``sync_postgres`` task through ``dag.test()``, all with a stand-in source."""

from __future__ import annotations

import datetime as dt
import json
import logging
import types
from decimal import Decimal

import pyarrow as pa
import pytest
from stand_in_source import register, stand_in_spec

from civic_pipelines import sources
from civic_pipelines.lake import BlockLocation, content_sha256_all, write_block
from civic_pipelines.sinks import postgres as sink
from civic_pipelines.sources.base import BlockData, Capabilities

UTC = dt.UTC
TABLES = {
    "data": {"table": "trips", "key": ["provider", "trip_id"], "block_key": ["provider", "_block_month"]},
    "events": {"table": "events", "key": ["provider", "event_id"], "block_key": ["provider", "_block_month"]},
}
SPEC = stand_in_spec(
    "pg_stand_in",
    title="PG stand-in",
    publisher="tests",
    cron="0 0 2 * *",
    first_month="2024-01",
    natural_key="trip_id",
    description="A stand-in source with a PostgreSQL sink.",
    parts=("alpha", "beta"),
    parts_param="providers",
    capabilities=Capabilities(several_tables=True, postgres_sink=True),
)
NASTY = ["plain", "", None, 'comma, "quote"', "new\nline", "ünïcödé ✓", "\\backslash\\N", "tab\there"]


def trips(provider: str, month: str, n: int, version: int = 0, start: int = 0) -> pa.Table:
    landed = dt.datetime(2026, 1, 1, tzinfo=UTC)
    ids = range(start, start + n)
    base = dt.datetime(int(month[:4]), int(month[5:]), 1, tzinfo=UTC)
    return pa.table(
        {
            "provider": pa.array([provider] * n, pa.string()),
            "trip_id": pa.array([f"{provider}-{i:07d}" for i in ids], pa.string()),
            "start_time": pa.array([base + dt.timedelta(minutes=i) for i in ids], pa.timestamp("us", tz="UTC")),
            "local_time": pa.array(
                [dt.datetime(2024, 3, 1, 8) + dt.timedelta(seconds=i) for i in ids], pa.timestamp("ms")
            ),
            "trip_distance": pa.array([i * 10 + version for i in ids], pa.int64()),
            "trip_duration": pa.array([None if i % 17 == 0 else i % 3600 for i in ids], pa.int32()),
            "battery": pa.array([None if i % 11 == 0 else (i % 100) / 100 for i in ids], pa.float64()),
            "cost": pa.array([Decimal(i % 1000) / 100 for i in ids], pa.decimal128(10, 2)),
            "valid": pa.array([i % 5 != 0 for i in ids], pa.bool_()),
            "note": pa.array([NASTY[i % len(NASTY)] for i in ids], pa.string()),
            "vehicle_type": pa.array(["scooter" if i % 2 else "bicycle" for i in ids], pa.string()).dictionary_encode(),
            "propulsion_types": pa.array(
                [["electric"] if i % 2 else ["human", "electric_assist"] for i in ids], pa.list_(pa.string())
            ),
            "start_location": pa.array(
                [{"lat": 30.2 + i / 1e6, "lng": -97.7} for i in ids],
                pa.struct([("lat", pa.float64()), ("lng", pa.float64())]),
            ),
            "_block_month": pa.array([month] * n, pa.string()),
            "_landed_at": pa.array([landed] * n, pa.timestamp("us", tz="UTC")),
        }
    )


def events(provider: str, month: str, n: int, version: int = 0) -> pa.Table:
    return pa.table(
        {
            "provider": pa.array([provider] * n, pa.string()),
            "event_id": pa.array([f"{provider}-e{i:07d}" for i in range(n)], pa.string()),
            "event_types": pa.array(
                [["trip_start"] if i % 2 else ["trip_end"] for i in range(n)], pa.list_(pa.string())
            ),
            "battery_percent": pa.array([(i + version) % 100 for i in range(n)], pa.int16()),
            "_block_month": pa.array([month] * n, pa.string()),
        }
    )


def land(lake: str, provider: str, month: str, data: pa.Table, extra: pa.Table | None) -> dict:
    location = BlockLocation(lake=lake, source=SPEC.name, month=month, part=provider)
    tables = {"events": extra} if extra is not None else {}
    manifest = {
        "source": SPEC.name,
        "month": month,
        "part": provider,
        "rows": data.num_rows,
        "sha256": content_sha256_all(data, tables),
        "landed_at": dt.datetime.now(UTC).isoformat(),
        "tables": {k: v.num_rows for k, v in tables.items()},
    }
    return write_block(location, data, None, manifest, tables=tables)


@pytest.fixture
def stand_in(monkeypatch):
    """The stand-in source module with POSTGRES_TABLES, registered in place of the registry's."""
    module = types.SimpleNamespace(SPEC=SPEC, POSTGRES_TABLES=TABLES, auth_headers=lambda connection: {})
    register(monkeypatch, module)
    return module


def rows(postgres, table: str, order: str) -> list[dict]:
    import psycopg.rows

    with postgres["connect"]() as conn:
        conn.row_factory = psycopg.rows.dict_row
        return conn.execute(f"select * from {table} order by {order}").fetchall()


def expected(table: pa.Table, order: list[str]) -> list[dict]:
    listed = table.to_pylist()
    return sorted(listed, key=lambda r: tuple(r[c] for c in order))


def normalise(row: dict) -> dict:
    """A parquet row as PostgreSQL returns it: nested values come back from jsonb, the rest as is."""
    return {k: (json.loads(json.dumps(v)) if isinstance(v, (list, dict)) else v) for k, v in row.items()}


def sync(month="2024-03", providers=("alpha",), lake=None, **kwargs):
    return sink.sync_blocks(SPEC.name, [{"month": month, "part": p} for p in providers], lake=lake, **kwargs)


def scalar(postgres, query: str):
    with postgres["connect"]() as conn:
        return conn.execute(query).fetchone()[0]


def per_provider(postgres) -> dict:
    with postgres["connect"]() as conn:
        return dict(conn.execute("select provider, count(*) from trips group by 1").fetchall())


def statements(postgres) -> list[tuple[str, int, int]]:
    with postgres["connect"]() as conn:
        return conn.execute(
            "select query, calls, rows from pg_stat_statements "
            "where dbid = (select oid from pg_database where datname = current_database())"
        ).fetchall()


def test_bulk_sync_mirrors_the_parquet_exactly_with_one_copy_per_table(stand_in, postgres, lake):
    data, extra = trips("alpha", "2024-03", 6_000), events("alpha", "2024-03", 3_000)
    land(lake, "alpha", "2024-03", data, extra)
    with postgres["connect"]() as conn:
        conn.execute("select pg_stat_statements_reset()")

    summary = sync(lake=lake)

    assert summary["synced"] == 1 and summary["failed"] == 0
    [block] = summary["blocks"]
    assert [(t["table"], t["rows"], t["inserted"], t["updated"], t["deleted"]) for t in block["tables"]] == [
        ("trips", 6_000, 6_000, 0, 0),
        ("events", 3_000, 3_000, 0, 0),
    ]
    got = rows(postgres, "trips", "provider, trip_id")
    assert got == [normalise(r) for r in expected(data, ["provider", "trip_id"])]
    assert rows(postgres, "events", "event_id") == [normalise(r) for r in expected(extra, ["event_id"])]
    # Empty strings stay empty strings, nulls stay null, through CSV.
    assert {r["note"] for r in got} == set(NASTY)

    with postgres["connect"]() as conn:
        kinds = dict(
            conn.execute(
                "select column_name, data_type from information_schema.columns where table_name = 'trips'"
            ).fetchall()
        )
        primary_key = conn.execute(
            "select array_agg(a.attname order by k.ord) from pg_index i "
            "cross join unnest(i.indkey) with ordinality k(attnum, ord) "
            "join pg_attribute a on a.attrelid = i.indrelid and a.attnum = k.attnum "
            "where i.indrelid = 'trips'::regclass and i.indisprimary"
        ).fetchone()[0]
    assert primary_key == ["provider", "trip_id"]
    assert kinds == {
        "provider": "text",
        "trip_id": "text",
        "start_time": "timestamp with time zone",
        "local_time": "timestamp without time zone",
        "trip_distance": "bigint",
        "trip_duration": "integer",
        "battery": "double precision",
        "cost": "numeric",
        "valid": "boolean",
        "note": "text",
        "vehicle_type": "text",
        "propulsion_types": "jsonb",
        "start_location": "jsonb",
        "_block_month": "text",
        "_landed_at": "timestamp with time zone",
    }

    # One COPY per table carried every row; nothing was inserted row by row.
    seen = statements(postgres)
    copies = [(q, calls) for q, calls, _ in seen if q.lower().startswith("copy")]
    assert len(copies) == 2 and all(calls == 1 for _, calls in copies), copies
    inserts = [(q, calls, n) for q, calls, n in seen if "insert into" in q.lower()]
    assert sum(calls for _, calls, _ in inserts) <= 4, inserts  # the upsert and the ledger row, per table
    assert max(calls for _, calls, _ in seen) < 20, "a statement ran once per row"


def test_a_resync_is_idempotent_and_skips_an_unchanged_landing(stand_in, postgres, lake):
    data = trips("alpha", "2024-03", 3_000)
    land(lake, "alpha", "2024-03", data, events("alpha", "2024-03", 500))
    sync(lake=lake)
    before = rows(postgres, "trips", "trip_id")

    again = sync(lake=lake)
    assert again["synced"] == 0 and again["unchanged"] == 1
    assert all(t["skipped"] and t["reason"].startswith("landing unchanged") for t in again["blocks"][0]["tables"])

    forced = sync(lake=lake, force=True)
    assert [(t["inserted"], t["updated"], t["deleted"]) for t in forced["blocks"][0]["tables"]] == [
        (0, 0, 0),
        (0, 0, 0),
    ]
    assert rows(postgres, "trips", "trip_id") == before

    # Rows lost behind the ledger's back (a hand edit) do not hide behind "unchanged": the count differs.
    with postgres["connect"]() as conn:
        conn.execute("delete from trips where trip_id like 'alpha-000000%'")
    repaired = sync(lake=lake)
    assert repaired["synced"] == 1 and repaired["blocks"][0]["tables"][0]["inserted"] == 10
    assert rows(postgres, "trips", "trip_id") == before


def test_a_relanded_block_leaves_exactly_its_new_rows_and_other_blocks_alone(stand_in, postgres, lake):
    land(lake, "alpha", "2024-03", trips("alpha", "2024-03", 5_000), events("alpha", "2024-03", 800))
    land(lake, "beta", "2024-03", trips("beta", "2024-03", 1_000), events("beta", "2024-03", 100))
    land(lake, "alpha", "2024-04", trips("alpha", "2024-04", 700, start=5_000), events("alpha", "2024-04", 0))
    sync(lake=lake, providers=("alpha", "beta"))
    sync(month="2024-04", lake=lake)
    untouched = [
        r
        for r in rows(postgres, "trips", "provider, trip_id")
        if (r["provider"], r["_block_month"]) != ("alpha", "2024-03")
    ]
    assert len(untouched) == 1_700

    # The provider re-published March: 1,000 trips gone, every distance changed, 20 new trips.
    new = pa.concat_tables(
        [trips("alpha", "2024-03", 4_000, version=1, start=1_000), trips("alpha", "2024-03", 20, start=9_000)]
    )
    land(lake, "alpha", "2024-03", new, events("alpha", "2024-03", 300))
    summary = sync(lake=lake)
    trips_result, events_result = summary["blocks"][0]["tables"]
    assert (trips_result["inserted"], trips_result["updated"], trips_result["deleted"]) == (20, 4_000, 1_000)
    assert (events_result["inserted"], events_result["updated"], events_result["deleted"]) == (0, 0, 500)

    got = rows(postgres, "trips", "provider, trip_id")
    march = [r for r in got if (r["provider"], r["_block_month"]) == ("alpha", "2024-03")]
    assert march == [normalise(r) for r in expected(new, ["provider", "trip_id"])]
    assert [r for r in got if (r["provider"], r["_block_month"]) != ("alpha", "2024-03")] == untouched

    # An empty re-landing empties the block (and only the block).
    land(lake, "alpha", "2024-03", new.slice(0, 0), events("alpha", "2024-03", 0))
    sync(lake=lake)
    assert rows(postgres, "trips", "provider, trip_id") == untouched
    assert [r["provider"] for r in rows(postgres, "events", "event_id")] == ["beta"] * 100


def test_a_failure_mid_block_rolls_back_every_table_of_the_block(stand_in, postgres, lake):
    land(lake, "alpha", "2024-03", trips("alpha", "2024-03", 2_000), events("alpha", "2024-03", 400))
    land(lake, "beta", "2024-03", trips("beta", "2024-03", 100), events("beta", "2024-03", 10))
    sync(lake=lake, providers=("alpha", "beta"))
    trips_before, events_before = rows(postgres, "trips", "trip_id"), rows(postgres, "events", "event_id")
    with postgres["connect"]() as conn:
        ledger_before = conn.execute("select * from civic_sync_ledger order by 1, 2").fetchall()
        # Injected: a rule the new events break. Trips are synced first, in the same transaction.
        conn.execute("alter table events add constraint battery_in_range check (battery_percent < 90) not valid")

    land(
        lake,
        "alpha",
        "2024-03",
        trips("alpha", "2024-03", 1_500, version=2),
        events("alpha", "2024-03", 400, version=5),
    )
    land(lake, "beta", "2024-03", trips("beta", "2024-03", 120), events("beta", "2024-03", 10))
    with pytest.raises(
        sink.PostgresSyncError, match=r"1 of 2 block\(s\) failed.*alpha 2024-03: rolled back: .*battery_in_range"
    ):
        sync(lake=lake, providers=("alpha", "beta"))

    got_trips = rows(postgres, "trips", "trip_id")
    assert [r for r in got_trips if r["provider"] == "alpha"] == [r for r in trips_before if r["provider"] == "alpha"]
    assert [r for r in rows(postgres, "events", "event_id") if r["provider"] == "alpha"] == [
        r for r in events_before if r["provider"] == "alpha"
    ]
    # The other block is its own transaction: it synced.
    assert sum(1 for r in got_trips if r["provider"] == "beta") == 120
    with postgres["connect"]() as conn:
        ledger = conn.execute("select * from civic_sync_ledger where block like '%alpha%' order by 1, 2").fetchall()
        conn.execute("alter table events drop constraint battery_in_range")
    assert ledger == [row for row in ledger_before if "alpha" in row[1]]

    # Fixed: the failed block is not in the ledger as synced, so the next run takes it.
    assert sync(lake=lake)["synced"] == 1
    assert len(rows(postgres, "trips", "trip_id")) == 1_620


def test_a_key_in_two_blocks_lives_once_in_the_block_synced_last(stand_in, postgres, lake):
    stand_in.POSTGRES_TABLES = {"data": TABLES["data"]}
    land(lake, "alpha", "2024-03", trips("alpha", "2024-03", 10), None)
    land(lake, "alpha", "2024-04", trips("alpha", "2024-04", 10, start=5), None)  # trips 5-9 re-dated into April
    sync(lake=lake)
    april = sync(month="2024-04", lake=lake)["blocks"][0]["tables"][0]
    assert (april["inserted"], april["updated"], april["moved"]) == (5, 5, 5)
    months = [r["_block_month"] for r in rows(postgres, "trips", "trip_id")]
    assert months == ["2024-03"] * 5 + ["2024-04"] * 10


def test_stray_rows_and_duplicate_keys_fail_the_block_before_any_change(stand_in, postgres, lake):
    land(lake, "alpha", "2024-03", trips("alpha", "2024-03", 100), None)
    stand_in.POSTGRES_TABLES = {"data": TABLES["data"]}
    sync(lake=lake)
    stray = pa.concat_tables([trips("alpha", "2024-03", 50), trips("alpha", "2024-02", 5, start=500)])
    land(lake, "alpha", "2024-03", stray, None)
    with pytest.raises(sink.PostgresSyncError, match="5 row.*other than"):
        sync(lake=lake)
    doubled = pa.concat_tables([trips("alpha", "2024-03", 50), trips("alpha", "2024-03", 3)])
    land(lake, "alpha", "2024-03", doubled, None)
    with pytest.raises(sink.PostgresSyncError, match="3 key"):
        sync(lake=lake)
    assert len(rows(postgres, "trips", "trip_id")) == 100


def test_arrow_types_without_a_csv_form_still_copy(stand_in, postgres, lake):
    table = pa.table(
        {
            "provider": ["alpha"] * 3,
            "trip_id": ["a", "b", "c"],
            "_block_month": ["2024-03"] * 3,
            "blob": pa.array([b"\x00\x01\xff", b"", None], pa.binary()),
            "wait": pa.array([1_500_000, None, 0], pa.duration("us")),
            "nothing": pa.nulls(3),
            "small": pa.array([1, None, -1], pa.int8()),
            "big": pa.array([2**64 - 1, 0, None], pa.uint64()),
            "day": pa.array([dt.date(2024, 3, 1), None, dt.date(1999, 12, 31)]),
            "tags": pa.array([[("k", "v")], None, []], pa.map_(pa.string(), pa.string())),
        }
    )
    land(lake, "alpha", "2024-03", table, None)
    stand_in.POSTGRES_TABLES = {"data": TABLES["data"]}
    sync(lake=lake)
    got = rows(postgres, "trips", "trip_id")
    assert [bytes(r["blob"]) if r["blob"] is not None else None for r in got] == [b"\x00\x01\xff", b"", None]
    assert [r["wait"] for r in got] == [dt.timedelta(seconds=1.5), None, dt.timedelta(0)]
    assert [r["nothing"] for r in got] == [None] * 3
    assert [r["big"] for r in got] == [Decimal(2**64 - 1), Decimal(0), None]
    assert [r["day"] for r in got] == [dt.date(2024, 3, 1), None, dt.date(1999, 12, 31)]
    assert [r["tags"] for r in got] == [[["k", "v"]], None, []]


def test_a_new_lake_column_is_added_and_a_dropped_one_goes_null(stand_in, postgres, lake):
    stand_in.POSTGRES_TABLES = {"data": TABLES["data"]}
    first = trips("alpha", "2024-03", 10)
    land(lake, "alpha", "2024-03", first, None)
    sync(lake=lake)
    second = first.drop_columns(["note"]).append_column("helmet", pa.array([True] * 10))
    land(lake, "alpha", "2024-03", second, None)
    sync(lake=lake)
    got = rows(postgres, "trips", "trip_id")
    assert all(r["helmet"] is True and r["note"] is None for r in got)


def test_the_connection_resolves_json_and_uri_and_never_shows_its_password(monkeypatch):
    monkeypatch.setenv("CIVIC_NO_AIRFLOW_LOOKUP", "1")
    monkeypatch.delenv("AIRFLOW_CONN_CIVIC_POSTGRES", raising=False)
    assert sink.resolve_connection() is None

    def resolved(conn_env: str):
        monkeypatch.setenv("AIRFLOW_CONN_CIVIC_POSTGRES", conn_env)
        conn = sink.resolve_connection()
        return conn, (conn.host, conn.port, conn.dbname, conn.user, conn.password, conn.options)

    conn, fields = resolved(
        json.dumps(
            {
                "conn_type": "postgres",
                "host": "db.example",
                "port": 6543,
                "login": "civic",
                "password": "p@ss:w/rd",
                "schema": "mobility",
                "extra": {"sslmode": "require", "cursor": "dictcursor"},
            }
        )
    )
    assert fields == ("db.example", 6543, "mobility", "civic", "p@ss:w/rd", {"sslmode": "require"})
    assert "p@ss" not in repr(conn) and "p@ss" not in conn.describe()
    _, fields = resolved("postgres://civic:p%40ss%3Aw%2Frd@%2Ftmp%2Fsock:5433/mobility?sslmode=disable")
    assert fields == ("/tmp/sock", 5433, "mobility", "civic", "p@ss:w/rd", {"sslmode": "disable"})


def test_the_password_appears_in_no_log_no_error_and_no_result(stand_in, postgres, lake, caplog, capsys):
    password = postgres["password"]
    caplog.set_level(logging.DEBUG)
    land(lake, "alpha", "2024-03", trips("alpha", "2024-03", 200), events("alpha", "2024-03", 20))
    summary = sync(lake=lake)
    errors = []
    for change in ({"port": 1}, {"schema": "no_such_db"}, {"login": "nobody"}):
        bad = sink.parse_connection(json.dumps({**json.loads(postgres["conn_json"]), **change}))
        with pytest.raises(sink.PostgresSyncError) as raised:
            sink.sync_blocks(SPEC.name, [{"month": "2024-03", "part": "alpha"}], lake=lake, connection=bad)
        errors.append(raised.value)
    assert any("does not exist" in str(e) for e in errors)
    for error in errors:
        assert password not in str(error) and error.__cause__ is None and error.__suppress_context__
    out = capsys.readouterr()
    text = caplog.text + out.out + out.err + json.dumps(summary, default=str) + " ".join(map(repr, errors))
    assert "syncing 1 block(s)" in caplog.text and password not in text


# --- the DAG task ------------------------------------------------------------------------------------


@pytest.fixture
def stand_in_dag(stand_in, postgres, airflow_db, run_dir, monkeypatch):
    """The stand-in source as a full DAG (extract -> lake -> sync_postgres), dbt replaced by a no-op."""
    import shutil

    from airflow.providers.standard.operators.empty import EmptyOperator

    from civic_pipelines.orchestration import dbt_group

    data = run_dir / "e2e_pg_stand_in"
    shutil.rmtree(data, ignore_errors=True)
    monkeypatch.setenv("CIVIC_LAKE", str(data / "lake"))
    monkeypatch.delenv("CIVIC_NO_AIRFLOW_LOOKUP")
    state = {"version": 0}

    def probe(session, connection, month, part, previous=None):
        return {"watermark": f"v{state['version']}"}

    def extract_block(session, connection, month, probed, landed_at, part, previous=None, location=None, force=False):
        n = 1_500 if part == "alpha" else 400
        data = trips(part, month, n - 100 * state["version"], version=state["version"])
        return BlockData(data=data, quarantine=None, stats={}, tables={"events": events(part, month, n // 10)})

    stand_in.probe, stand_in.extract_block = probe, extract_block
    from civic_pipelines.orchestration import marts_dag

    # dbt replaced by a no-op in every DAG of the folder (dag.test() parses them all), so no dbt
    # task produces a table Asset either.
    monkeypatch.setattr(dbt_group, "build_dbt_group", lambda spec, group_id="dbt", **_: EmptyOperator(task_id=group_id))
    monkeypatch.setattr(marts_dag, "emit_table_assets", lambda source, group: None)
    # dag.test() serializes the DAGs it finds in the dags folder: the registry must list the stand-in there too.
    real_names = sources.names
    monkeypatch.setattr(sources, "names", lambda: [*real_names(), SPEC.name])
    from civic_pipelines.orchestration.dag_factory import build_source_dag

    return lambda: (build_source_dag(SPEC.name, extract_mode="local"), state)


def task_state(run, task_id):
    return sorted(ti.state for ti in run.get_task_instances() if ti.task_id == task_id)


def test_the_dag_syncs_after_the_blocks_and_skips_when_told(stand_in_dag, postgres, capsys, caplog):
    build = stand_in_dag
    dag, state = build()
    assert dag.params.get_param("sync_postgres").value is True
    sync_task = dag.get_task("sync_postgres")
    assert sync_task.upstream_task_ids == {"extract_load"} and not sync_task.downstream_task_ids
    assert dag.get_task("plan_blocks").downstream_task_ids == {"extract_load"}
    conf = {"start_month": "2024-03", "end_month": "2024-03"}

    run = dag.test(run_conf=conf)
    assert run.state == "success" and task_state(run, "sync_postgres") == ["success"]
    assert per_provider(postgres) == {"alpha": 1_500, "beta": 400}

    # The provider re-published fewer trips; with sync_postgres off PostgreSQL keeps the old rows...
    state["version"] = 1
    off = dag.test(run_conf={**conf, "sync_postgres": False})
    assert task_state(off, "extract_load") == ["success", "success"] and task_state(off, "sync_postgres") == ["skipped"]
    assert scalar(postgres, "select count(*) from trips") == 1_900
    # ...and the next run, all blocks skipped, converges PostgreSQL on the lake.
    # (A fresh DAG object: dag.test() runs tasks in this process and leaves the last run's params on
    # the DAG's tasks, where a worker would parse the DAG anew.)
    converged = build()[0].test(run_conf=conf)
    assert task_state(converged, "extract_load") == ["skipped", "skipped"]
    assert task_state(converged, "sync_postgres") == ["success"]
    assert per_provider(postgres) == {"alpha": 1_400, "beta": 300}

    [summary] = [
        ti.xcom_pull(task_ids="sync_postgres") for ti in converged.get_task_instances() if ti.task_id == "sync_postgres"
    ]
    assert summary["synced"] == 2 and {t["deleted"] for b in summary["blocks"] for t in b["tables"]} == {100, 0}

    # The sync's own log lines were captured, and no line of any run holds the password.
    out = capsys.readouterr()
    assert "syncing 2 block(s) of pg_stand_in to PostgreSQL civic@127.0.0.1" in caplog.text
    assert postgres["password"] not in caplog.text + out.out + out.err + json.dumps(summary)


def test_the_dag_skips_the_sync_without_a_connection(stand_in_dag, monkeypatch):
    dag, _ = stand_in_dag()
    monkeypatch.delenv("AIRFLOW_CONN_CIVIC_POSTGRES")
    run = dag.test(run_conf={"start_month": "2024-03", "end_month": "2024-03"})
    assert task_state(run, "extract_load") == ["success", "success"]
    assert task_state(run, "sync_postgres") == ["skipped"]
