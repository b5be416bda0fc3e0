"""The quickstart's main job under the real scheduler: `scripts/demo.py` with CIVIC_DEMO_EXIT=1.

This is where pools are proven (dag.test() ignores them): the dbt tasks of every source's run share
the one-slot duckdb_writer pool, so none of them may overlap in time.
"""

from __future__ import annotations

import os
import re
import socket
import sqlite3
import subprocess
import sys
from datetime import date, datetime
from pathlib import Path

import duckdb
import pytest
from airflow_runs import MARTS_INPUT_TABLES

from civic_pipelines.months import format_month, previous_month

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def load_demo():
    import importlib.util

    spec = importlib.util.spec_from_file_location("civic_demo_script", ROOT / "scripts" / "demo.py")
    demo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(demo)
    return demo


PROGRESS_LINE = re.compile(
    r"^\[demo [0-9:]{8}\] progress (\S+): blocks (\d+)/(\d+|\?), dbt nodes (\d+)/(\d+) \((.*)\)$"
)


def progress_lines(output: str) -> dict[str, list[tuple]]:
    """{dag_id: [(blocks done, blocks planned or None, dbt done, dbt planned, status), ...]}."""
    found: dict[str, list[tuple]] = {}
    for line in output.splitlines():
        if match := PROGRESS_LINE.match(line):
            dag_id, blocks_done, blocks_planned, dbt_done, dbt_planned, status = match.groups()
            found.setdefault(dag_id, []).append(
                (
                    int(blocks_done),
                    None if blocks_planned == "?" else int(blocks_planned),
                    int(dbt_done),
                    int(dbt_planned),
                    status,
                )
            )
    return found


def test_the_demo_lands_the_most_recent_complete_months_and_every_source_publishes_them(monkeypatch):
    """Issue 15 item 6: the demo landed 2024-01..2024-03, so the dashboard read "32 months behind".
    It lands the three months before the current one, and tells the replay to publish them."""
    demo = load_demo()
    monkeypatch.delenv("CIVIC_DEMO_START", raising=False)
    monkeypatch.delenv("CIVIC_DEMO_END", raising=False)
    assert demo.demo_months(date(2026, 12, 7)) == ["2026-09", "2026-10", "2026-11"]
    assert demo.demo_months(date(2027, 1, 1)) == ["2026-10", "2026-11", "2026-12"]
    assert demo.replay_config(date(2026, 12, 7)) == {"toronto_311": {"current_through": "2026-12-06"}}


def test_progress_counts_blocks_and_dbt_nodes_done_of_planned():
    demo = load_demo()
    run = {"state": "running", "start_date": "2026-12-07T03:00:00Z", "end_date": None}
    unexpanded = [
        {"task_id": "plan_blocks", "map_index": -1, "state": "running"},
        {"task_id": "extract_load", "map_index": -1, "state": None},
        {"task_id": "dbt.stg_x_run", "map_index": -1, "state": None},
        {"task_id": "dbt.fct_x_run", "map_index": -1, "state": None},
    ]
    line = demo.RunProgress.of("x", run, unexpanded).line()
    assert line == "progress x: blocks 0/?, dbt nodes 0/2 (running)"
    assert progress_lines(f"[demo 03:00:00] {line}")["x"] == [(0, None, 0, 2, "running")]
    expanded = [
        {"task_id": "plan_blocks", "map_index": -1, "state": "success"},
        *(
            {"task_id": "extract_load", "map_index": i, "state": s}
            for i, s in enumerate(["success", "skipped", "running"])
        ),
        {"task_id": "dbt.stg_x_run", "map_index": -1, "state": "success"},
        {"task_id": "dbt.fct_x_run", "map_index": -1, "state": "queued"},
        {"task_id": "source_freshness", "map_index": -1, "state": None},
    ]
    assert demo.RunProgress.of("x", run, expanded).line() == "progress x: blocks 2/3, dbt nodes 1/2 (running)"
    done = {"state": "success", "start_date": "2026-12-07T03:00:00Z", "end_date": "2026-12-07T03:01:30Z"}
    finished = demo.RunProgress.of("x", done, [{**ti, "state": "success"} for ti in expanded])
    assert finished.finished and finished.line() == "progress x: blocks 3/3, dbt nodes 2/2 (success in 90 s)"


def test_only_the_scheduler_preloads_dbt(monkeypatch, tmp_path):
    """The scheduler's LocalExecutor forks every task, so dbt imported there is imported in each
    task; the API server, DAG processor and triggerer would only pay for the import."""
    from civic_pipelines.orchestration import preload

    demo = load_demo()
    settings_file = (
        demo.demo_environment(tmp_path, replay_port=18555, api_port=18556)["AIRFLOW_HOME"]
        + "/config/airflow_local_settings.py"
    )
    calls = []
    monkeypatch.setattr(preload, "preload", lambda: calls.append(sys.argv[1]))
    for command in ("scheduler", "api-server", "dag-processor", "triggerer"):
        monkeypatch.setattr(sys, "argv", ["airflow", command, "--skip-serve-logs"])
        exec(compile(Path(settings_file).read_text(), "airflow_local_settings.py", "exec"), {})
    assert calls == ["scheduler"]


def test_the_demo_runs_one_mds_provider_per_version_family(tmp_path):
    """Issue 14 item 4: the demo ran no 1.2 provider, so nothing showed its status changes were all
    quarantined. Its providers cover 0.4, 1.x and 2.0, each with a connection to the replay."""
    import json

    from civic_pipelines.sources import mds

    demo = load_demo()
    env = demo.demo_environment(tmp_path, replay_port=18555, api_port=18556)
    providers = json.loads(env["AIRFLOW_VAR_CIVIC_MDS_PROVIDERS"])
    families = {}
    for name in providers:
        connection = json.loads(env[f"AIRFLOW_CONN_CIVIC_MDS_{name.upper()}"])
        assert connection["host"].startswith("http://127.0.0.1:18555/mds/"), connection
        families[name] = mds.parse_version(connection["extra"]["mds_version"])[1]
    assert sorted(families.values()) == ["0.4", "1.x", "2.0"] and families["bolt"] == "1.x"


def loopback_lines(output: str) -> dict[str, list[tuple[str, str, int]]]:
    """The demo's socket checks, {what it said: [(process, ip, port), ...]}."""
    found = {}
    for said, listed in re.findall(r"\] ((?:after the runs, still )?listening on loopback only): (.*)", output):
        found[said] = [(name, ip, int(port)) for name, ip, port in re.findall(r"([\w-]+) ([\d.]+):(\d+)", listed)]
    return found


@pytest.mark.xdist_group("demo")
@pytest.mark.timeout(2700)  # the whole demo: every source, every dbt model, under the real scheduler
def test_demo_runs_the_pipeline_under_the_real_scheduler_and_cleans_up(run_dir, reliability):
    from civic_pipelines.replay.seattle import SeattleCrimeDataset

    # `make demo` makes every user an admin (SimpleAuthManager's all-admins mode), acceptable only
    # because nobody else can reach what it starts: the demo reads the listening sockets of every
    # process in its components' sessions from the kernel (psutil), once they are healthy and again
    # after the runs, and refuses any beyond 127.0.0.1 or on an Airflow log-server port.
    reliability.row(
        fault="demo servers reachable from the network (all users admin)",
        source="demo",
        expected="API server, replay server and every Airflow component listen on 127.0.0.1 only; "
        "no log server on 8793/8794",
    )

    data = run_dir / "demo"
    subprocess.run(["rm", "-rf", str(data)], check=True)
    api_port, replay_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "CIVIC_"))}
    env.update(
        {
            "CIVIC_DEMO_EXIT": "1",
            "CIVIC_DATA_DIR": str(data),
            "CIVIC_AIRFLOW_PORT": str(api_port),
            "CIVIC_REPLAY_PORT": str(replay_port),
        }
    )
    demo = subprocess.Popen(
        [sys.executable, str(ROOT / "scripts" / "demo.py")],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        stdout, _ = demo.communicate(timeout=2600)
    finally:
        if demo.poll() is None:
            # A timeout (ours or pytest's) must not leave Airflow running: the demo stops every
            # process it started on SIGTERM.
            demo.terminate()
            try:
                demo.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                demo.kill()
    result = subprocess.CompletedProcess(demo.args, demo.returncode, stdout, "")
    output = result.stdout + result.stderr
    (run_dir / "demo-output.txt").write_text(output)
    assert result.returncode == 0, output[-5000:]
    from civic_pipelines import sources

    for source in [*sources.names(), "civic_marts"]:
        assert f"{source}=success" in output.split("Outcome    :", 1)[1].splitlines()[0], source
    assert f"Airflow UI : http://127.0.0.1:{api_port}" in output
    # the run ends by printing the dashboard's address, which answered
    assert f"Dashboard  : http://127.0.0.1:{api_port}/civic/" in output.split("Outcome    :", 1)[1]
    assert "the dashboard did not answer" not in output

    # Everything it started is gone.
    assert not port_open(api_port) and not port_open(replay_port)

    # Every socket its processes listened on was on loopback, before the runs and after them.
    checks = loopback_lines(output)
    assert set(checks) == {"listening on loopback only", "after the runs, still listening on loopback only"}, checks
    for sockets in checks.values():
        assert ("api-server", "127.0.0.1", api_port) in sockets and ("replay", "127.0.0.1", replay_port) in sockets
        assert {ip for _, ip, _ in sockets} == {"127.0.0.1"}, sockets
        assert not {port for *_, port in sockets} & {8793, 8794}, sockets
    environment = load_demo().demo_environment(run_dir / "demo-environment", replay_port, api_port)
    assert environment["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS"] == "True"  # why the check exists
    last = checks["after the runs, still listening on loopback only"]
    reliability.observed(
        f"{len(last)} listening sockets of {sorted({n for n, *_ in last})}, all on 127.0.0.1: "
        + ", ".join(f"{n} :{p}" for n, _, p in last)
    )

    # While it waited it said where each run was, and each run's last word is everything done.
    progress = progress_lines(output)
    assert set(sources.names()) <= set(progress), sorted(progress)
    for dag_id, lines in progress.items():  # every source's run, and any other run the demo waits for
        blocks_done, blocks_planned, dbt_done, dbt_planned, status = lines[-1]
        assert blocks_done == blocks_planned and (blocks_planned or dag_id not in sources.names()), (dag_id, lines[-1])
        assert dbt_planned and dbt_done == dbt_planned, (dag_id, lines[-1])
        assert status.startswith("success"), (dag_id, lines[-1])
    summary = output.split("first trigger to last run finished:", 1)
    assert len(summary) == 2, output[-3000:]

    # The warehouse holds exactly the replay's rows for the demo's months, the most recent complete
    # ones (the dashboard's cards read current), and nothing later.
    months = load_demo().demo_months()
    assert months[-1] == format_month(previous_month(date.today().replace(day=1)))
    dataset = SeattleCrimeDataset()
    with duckdb.connect(str(data / "warehouse.duckdb"), read_only=True) as con:
        per_month = dict(con.sql("select _block_month, count(*) from fct_crime_offenses group by 1").fetchall())
        cities = dict(
            con.sql(
                "select city, count(distinct _block_month) from fct_service_requests "
                f"where _block_month between '{months[0]}' and '{months[-1]}' group by 1"
            ).fetchall()
        )
        newest = dict(con.sql("select city, max(_block_month) from fct_service_requests group by 1").fetchall())
        # civic_marts, queued by the source runs' Asset events, built the marts from the facts.
        (crime_mart,) = con.sql("select sum(offenses) from mart_crime_monthly").fetchall()[0]
        requests = con.sql(
            "select (select count(*) from fct_service_requests), (select sum(requests) from mart_requests_by_category_month)"
        ).fetchall()[0]
        (works,) = con.sql("select count(*) from mart_works_by_month").fetchall()[0]
        (trips,) = con.sql("select count(*) from mart_mobility_trips_daily").fetchall()[0]
    assert cities == {city: len(months) for city in ("chicago", "minneapolis", "toronto", "nyc")}
    assert newest == {city: months[-1] for city in ("chicago", "minneapolis", "toronto", "nyc")}
    assert max(per_month) == months[-1]
    for month in months:
        assert per_month[month] == len(dataset.rows_for_month(month)), month
    assert crime_mart == sum(per_month.values())
    assert requests[0] == requests[1] > 0
    assert works > 0 and trips > 0

    # Under the real scheduler an Asset event made the marts run: every civic_marts run was
    # asset-triggered, and what the Assets view lists: each Asset, its producing tasks, its consumer.
    with sqlite3.connect(data / "airflow" / "airflow.db") as db:
        marts_runs = db.execute("select run_type, state from dag_run where dag_id = 'civic_marts'").fetchall()
        producers = db.execute("""select a.uri, r.dag_id, r.task_id from asset a
                                  join task_outlet_asset_reference r on r.asset_id = a.id""").fetchall()
        consumers = dict(
            db.execute("""select a.uri, group_concat(r.dag_id) from asset a
                                       join dag_schedule_asset_reference r on r.asset_id = a.id group by a.uri""").fetchall()
        )
        events = {
            row[0] for row in db.execute("select distinct a.uri from asset_event e join asset a on a.id = e.asset_id")
        }
    assert marts_runs and {run_type for run_type, _ in marts_runs} == {"asset_triggered"}, marts_runs
    assert {state for _, state in marts_runs} == {"success"}, marts_runs
    lake = {f"x-civic://lake/{name}" for name in sources.names()}
    tables = {f"x-civic://warehouse/{t}" for t in MARTS_INPUT_TABLES}
    assert {uri: "civic_marts" for uri in lake | tables} == consumers
    assert {(uri, dag, task) for uri, dag, task in producers if uri in lake} == {
        (f"x-civic://lake/{name}", name, "extract_load") for name in sources.names()
    }
    assert {(uri, task) for uri, _, task in producers if uri in tables} == {
        (f"x-civic://warehouse/{t}", f"dbt.{t}_model_build") for t in MARTS_INPUT_TABLES
    }
    assert {dag for uri, dag, _ in producers if uri.endswith("fct_service_requests")} == {
        "minneapolis_311",
        "toronto_311",
        "nyc_311",
        "chicago_311",
    }
    assert events == lake | tables, "every Asset was updated by the demo's runs, and no other (Cosmos's own are off)"

    # Pools, as the real scheduler applied them.
    with sqlite3.connect(data / "airflow" / "airflow.db") as db:
        rows = db.execute(
            "select run_id, task_id, pool, state, start_date, end_date from task_instance "
            "where task_id like 'dbt.%' or task_id like 'marts.%'"
        ).fetchall()
        extract_pools = {
            row[0] for row in db.execute("select distinct pool from task_instance where task_id = 'extract_load'")
        }
        weights = db.execute("select dag_id, task_id, priority_weight from task_instance").fetchall()
    assert rows and {row[2] for row in rows} == {"duckdb_writer"}
    # A run's dbt nodes take a free executor slot before any run's blocks (the writer slot is the
    # bottleneck): the scheduler orders what it queues by these weights.
    for source in sources.names():
        dbt_weights = [w for dag, task, w in weights if dag == source and task.startswith("dbt.")]
        block_weights = [w for dag, task, w in weights if task == "extract_load"]
        assert dbt_weights and min(dbt_weights) > max(block_weights), (source, dbt_weights, max(block_weights))
    assert extract_pools == {sources.spec(name).pool for name in sources.names()}
    ran = sorted(
        (datetime.fromisoformat(r[4]), datetime.fromisoformat(r[5]), r[1], r[0]) for r in rows if r[3] == "success"
    )
    assert len(ran) >= 4
    for (_start_a, end_a, *a), (start_b, _end_b, *b) in zip(ran, ran[1:]):
        assert end_a <= start_b, f"dbt tasks overlapped in the one-slot pool: {a} and {b}"


def test_production_settings_never_make_every_user_an_admin():
    """All-admins is the demo's alone (it listens on loopback): the image, the compose override and
    the Airflow settings the Astro CLI loads leave Airflow's login on."""
    for name in ("Dockerfile", "docker-compose.override.yml", "airflow_settings.yaml", "requirements.txt"):
        text = (ROOT / name).read_text().lower()
        assert "all_admins" not in text, name
    # the demo's Airflow environment (scripts/demo.py starts its stack from it)
    assert "all_admins" in (ROOT / "include" / "civic_pipelines" / "devtools" / "local_airflow.py").read_text().lower()
    assert "local_airflow" in (ROOT / "scripts" / "demo.py").read_text()
