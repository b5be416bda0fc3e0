"""The docker extract mode for real: mapped DockerOperator blocks run as containers of the
extractor image, through podman's Docker-compatible API on a unix socket, against the replay
server, and land exactly what the local mode lands.

``scripts/container_setup.py`` installs podman, builds the debootstrapped base and the extractor
image (cached by tag and a hash of the inputs) and serves the API for this module; nothing here
is skipped. Per source: the DAG built with ``extract_mode="docker"`` runs two months with
``dag.test()`` (plan_blocks and the mapped extract_load); then the same months land in-process
(local mode's ``run_block``) in a second lake, and the two landings must agree (manifests' sha256,
rows, quarantine, watermark; the data tables row for row). The connection, with a secret app token, reaches each container only as its
``AIRFLOW_CONN_*`` variable: never in the command, the rendered fields, the XComs or the logs.
No container is left behind; the landed files belong to the user running the tests. Last, the
lake on S3 (moto's server on loopback): the lake's AWS connection reaches each container privately,
each block lands in the bucket once, and an unchanged re-run is two skipped tasks. The figures
(per-block container overhead) print at the end of the module.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import time
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest
from docker_mode import CONTAINERS, FIGURES, container_engine, docker_settings, overhead_figure, record_engine_calls  # noqa: F401
from test_lake_s3 import ACCESS_KEY, BUCKET, SECRET_KEY, moto_endpoint, objects, recorded_access_keys, s3_lake  # noqa: F401

pytestmark = CONTAINERS

MONTHS = ["2024-01", "2024-02"]
SECRET = "app-token-" + secrets.token_hex(12)
CONNECTIONS = {"seattle_crime": "AIRFLOW_CONN_CIVIC_SEATTLE_CRIME", "nyc_311": "AIRFLOW_CONN_CIVIC_NYC_311"}


@pytest.fixture(scope="module")
def environment(container_engine, airflow_db, run_dir):
    """Two lakes (docker and local), a warehouse, the replay server, the connections with a secret
    token, and the Variables that send the docker mode to the API socket with host networking."""
    from civic_pipelines.replay.server import make_server

    data = run_dir / "e2e_containers"
    shutil.rmtree(data, ignore_errors=True)
    (data / "lake").mkdir(parents=True)
    server = make_server(host="127.0.0.1", port=0)
    # Which app token each request to the API carried (the replay does not log headers).
    tokens: list[str | None] = []
    dispatch = server.dispatch

    def dispatch_and_record(request):
        tokens.append(request.headers.get("x-app-token"))
        return dispatch(request)

    server.dispatch = dispatch_and_record
    server.start()
    host, port = server.url.split("://", 1)[1].split(":")
    conn = json.dumps({"conn_type": "http", "host": host, "port": int(port), "schema": "http", "password": SECRET})
    settings = {
        "CIVIC_LAKE": str(data / "lake"),
        "CIVIC_WAREHOUSE": str(data / "warehouse.duckdb"),
        **docker_settings(container_engine),
        **{variable: conn for variable in CONNECTIONS.values()},
    }
    with pytest.MonkeyPatch.context() as patch:
        for key, value in settings.items():
            patch.setenv(key, value)
        try:
            yield {
                "server": server,
                "tokens": tokens,
                "data": data,
                "lake": data / "lake",
                "local_lake": data / "local_lake",
                **container_engine,
            }
        finally:
            server.stop()


@pytest.fixture
def engine_calls(monkeypatch):
    return record_engine_calls(monkeypatch)


def block_folder(lake: Path, source: str, month: str) -> Path:
    return lake / source / f"month={month}"


def run_docker_dag(source: str, tasks: list[str]):
    """The source's DAG in docker mode, narrowed to ``tasks`` and what they need upstream
    (plan_blocks), run for two months with dag.test(); returns (dag, run). The dbt task group
    downstream runs the same in both modes (in-process, over the lake) and is covered by the
    local-mode end-to-end tests; leaving it out keeps this module inside the suite's time budget
    (add "dbt.stg_seattle_crime__offenses_model_build" to run the staging model too: +10-25 s)."""
    from civic_pipelines.orchestration.dag_factory import build_source_dag

    started = time.monotonic()
    dag = build_source_dag(source, extract_mode="docker")
    built = time.monotonic()
    operator_class = dag.get_task("extract_load").operator_class
    assert getattr(operator_class, "__name__", operator_class) == "CivicExtractDockerOperator"
    dag = dag.partial_subset(task_ids=tasks, include_upstream=True, include_downstream=False)
    run = dag.test(run_conf={"start_month": MONTHS[0], "end_month": MONTHS[1]})
    FIGURES.append(
        f"{source}: DAG built in {built - started:.1f} s; dag.test() of {', '.join(tasks)} "
        f"(and upstream) {time.monotonic() - built:.1f} s"
    )
    return dag, run


def check_landing_matches_local(environment, source: str) -> dict[str, dict]:
    """Land the same months in-process (what local mode's task runs) in a second lake; both
    landings must hold the same blocks. Returns the local manifests by month."""
    from civic_pipelines.extract import run_block

    local = {}
    for month in MONTHS:
        local[month] = run_block(source, month, lake=str(environment["local_lake"]))
        docker_folder = block_folder(environment["lake"], source, month)
        local_folder = block_folder(environment["local_lake"], source, month)
        landed = json.loads((docker_folder / "_manifest.json").read_text())
        assert landed["lake"] == "/lake", "the container wrote through the bind mount at /lake"
        for key in ("sha256", "rows", "quarantined", "watermark"):
            if key in local[month] or key in landed:
                assert landed.get(key) == local[month].get(key), (source, month, key)
        assert landed["rows"] > 1000
        assert sorted(p.name for p in docker_folder.iterdir()) == sorted(p.name for p in local_folder.iterdir())
        for name in sorted(p.name for p in local_folder.glob("*.parquet")):
            mine, theirs = pq.read_table(docker_folder / name), pq.read_table(local_folder / name)
            drop = [c for c in ("_landed_at",) if c in mine.column_names]
            assert mine.drop_columns(drop).equals(theirs.drop_columns(drop)), (source, month, name)
    return local


def check_ownership(lake: Path, source: str) -> None:
    """Files the containers wrote through the bind mount belong to the test's user and can be read,
    replaced and removed by it (the folders are writable)."""
    me = os.geteuid()
    for path in [lake / source, *(lake / source).rglob("*")]:
        info = path.stat()
        assert info.st_uid == me, f"{path} is owned by uid {info.st_uid}, not {me}"
        assert os.access(path, os.R_OK), path
        if path.is_dir():
            assert os.access(path, os.W_OK | os.X_OK), path


def check_engine_calls(calls: list[dict], source: str, image: str) -> None:
    variable = CONNECTIONS[source]
    assert len(calls) == len(MONTHS), calls
    assert sorted(call["command"][5] for call in calls) == MONTHS
    for call in calls:
        assert call["command"][:5] == ["civic", "extract", "--source", source, "--month"], call["command"]
        assert call["command"][6:] == ["--lake", "/lake", "--skipped-exit-code", "99"]
        assert SECRET not in json.dumps(call["command"])
        assert call["image"] == image
        assert call["user"] == f"{os.geteuid()}:{os.getegid()}"
        assert call["host_config"]["NetworkMode"] == "host"
        [mount] = call["host_config"]["Mounts"]
        assert mount["Target"] == "/lake" and mount["Type"] == "bind"
        environment = call["environment"]
        assert SECRET in environment[variable], "the connection reaches the container as its AIRFLOW_CONN_* variable"
        others = {key: value for key, value in environment.items() if key != variable}
        assert SECRET not in json.dumps(others), "and through no other variable"


def check_no_container_left(environment, calls: list[dict]) -> None:
    import docker

    client = docker.APIClient(base_url=environment["service"].url, version="auto")
    try:
        left = client.containers(all=True)
        ours = {call["id"] for call in calls}
        assert not [c for c in left if c["Id"] in ours or c.get("Image") == environment["setup"].image], left
    finally:
        client.close()


def check_secret_absent(dag_id: str, run_id: str, output: str, secrets_: tuple[str, ...] = (SECRET,)) -> None:
    """Neither the task logs (console and files), the rendered fields nor the XComs hold the token
    (or any of ``secrets_``)."""
    from airflow.models.renderedtifields import RenderedTaskInstanceFields
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    for secret in secrets_:
        assert secret not in output, "the secret was printed"
    logs = Path(os.environ["AIRFLOW_HOME"]) / "logs"
    for path in logs.rglob("*") if logs.exists() else []:
        if path.is_file() and f"dag_id={dag_id}" in str(path):
            text = path.read_text(errors="replace")
            assert not [secret for secret in secrets_ if secret in text], path
    with create_session() as session:
        rendered = session.query(RenderedTaskInstanceFields).filter_by(dag_id=dag_id, run_id=run_id).all()
        xcoms = session.query(XComModel).filter_by(dag_id=dag_id, run_id=run_id).all()
        commands = [r.rendered_fields.get("command") for r in rendered if r.task_id == "extract_load"]
        assert len(commands) == len(MONTHS) and all(c and c[:2] == ["civic", "extract"] for c in commands), commands
        for secret in secrets_:
            assert secret not in json.dumps([r.rendered_fields for r in rendered], default=str)
            assert secret not in json.dumps([x.value for x in xcoms], default=str)


def skipped_manifests(dag_id: str, run_id: str) -> dict[str, bool]:
    """Month -> ``skipped`` of the manifests extract_load pushed under the XCom key ``manifest``."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        rows = (
            session.query(XComModel)
            .filter_by(dag_id=dag_id, run_id=run_id, task_id="extract_load", key="manifest")
            .all()
        )
        values = [row.value if isinstance(row.value, dict) else json.loads(row.value) for row in rows]
    return {value["month"]: value["skipped"] for value in values}


def record_figures(source: str, calls: list[dict], environment) -> None:
    for call in sorted(calls, key=lambda c: c["command"][5]):
        month = call["command"][5]
        manifest = json.loads((block_folder(environment["lake"], source, month) / "_manifest.json").read_text())
        FIGURES.append(overhead_figure(f"{source} {month}", call, manifest))


def token_requests(environment) -> int:
    return environment["tokens"].count(SECRET)


def test_seattle_dag_runs_its_blocks_in_containers(environment, engine_calls, capfd):
    before = token_requests(environment)
    dag, run = run_docker_dag("seattle_crime", ["extract_load"])
    states = {(ti.task_id, ti.map_index): ti.state for ti in run.get_task_instances()}
    assert run.state == "success", states
    assert sorted(s for (task, _), s in states.items() if task == "extract_load") == ["success", "success"]
    output = "".join(capfd.readouterr())
    assert '"source": "seattle_crime"' in output, "the containers' manifest lines are in the task logs"

    check_engine_calls(engine_calls, "seattle_crime", environment["setup"].image)
    check_no_container_left(environment, engine_calls)
    assert token_requests(environment) > before, "the containers sent the connection's token to the API"
    check_secret_absent(dag.dag_id, run.run_id, output)
    check_ownership(environment["lake"], "seattle_crime")

    # The host reads what the containers wrote through the bind mount the way dbt's staging models
    # do (DuckDB over the lake's parquet): every offense the replay served for the two months.
    dataset = environment["server"].dataset
    want = {int(row["offense_id"]) for month in MONTHS for row in dataset.rows_for_month(month)}
    pattern = str(environment["lake"] / "seattle_crime" / "month=*" / "data.parquet")
    with duckdb.connect() as con:
        got = [
            row[0] for row in con.sql(f"select cast(offense_id as bigint) from read_parquet('{pattern}')").fetchall()
        ]
    assert len(got) == len(want) and set(got) == want

    check_landing_matches_local(environment, "seattle_crime")
    record_figures("seattle_crime", engine_calls, environment)


def test_nyc_311_blocks_run_in_containers(environment, engine_calls, capfd):
    dag, run = run_docker_dag("nyc_311", ["extract_load"])
    states = {(ti.task_id, ti.map_index): ti.state for ti in run.get_task_instances()}
    assert run.state == "success", states
    assert sorted(s for (task, _), s in states.items() if task == "extract_load") == ["success", "success"]
    output = "".join(capfd.readouterr())

    check_engine_calls(engine_calls, "nyc_311", environment["setup"].image)
    check_no_container_left(environment, engine_calls)
    check_secret_absent(dag.dag_id, run.run_id, output)
    check_ownership(environment["lake"], "nyc_311")
    dataset = environment["server"].generated["nyc_311"]
    for month in MONTHS:
        landed = pq.read_table(block_folder(environment["lake"], "nyc_311", month) / "data.parquet")
        assert landed.num_rows == len(dataset.rows_for_month(month))

    check_landing_matches_local(environment, "nyc_311")
    record_figures("nyc_311", engine_calls, environment)


def test_an_s3_lake_in_docker_mode_lands_each_block_once(environment, engine_calls, s3_lake, monkeypatch, capfd):
    """The lake on S3 (moto's server on the host's loopback, reached over host networking): each
    container gets the lake's connection civic_lake_s3 privately, lands its block in the bucket
    once (one data object, every replay row once), and an unchanged re-run is two skipped tasks
    that rewrite nothing; neither the secret key nor the app token is printed anywhere."""
    import requests

    from civic_pipelines.lake import BlockLocation, read_block_table

    lake = f"s3://{BUCKET}/docker-lake"
    monkeypatch.setenv("CIVIC_LAKE", lake)
    monkeypatch.delenv("CIVIC_NO_AIRFLOW_LOOKUP")  # the host side of this test reads like an Airflow worker
    endpoint, client = s3_lake["endpoint"], s3_lake["client"]
    requests.post(f"{endpoint}/moto-api/recorder/start-recording", timeout=10).raise_for_status()

    dag, run = run_docker_dag("seattle_crime", ["extract_load"])
    states = {(ti.task_id, ti.map_index): ti.state for ti in run.get_task_instances()}
    assert run.state == "success", states
    assert sorted(s for (task, _), s in states.items() if task == "extract_load") == ["success", "success"]
    for call in engine_calls:
        assert call["command"][6:8] == ["--lake", lake] and call["exit_code"] == 0
        assert not call["host_config"].get("Mounts"), "nothing bind-mounted: the lake is the bucket"
        handed = json.loads(call["environment"]["AIRFLOW_CONN_CIVIC_LAKE_S3"])
        assert handed["login"] == ACCESS_KEY and handed["password"] == SECRET_KEY
        others = {k: v for k, v in call["environment"].items() if k != "AIRFLOW_CONN_CIVIC_LAKE_S3"}
        assert SECRET_KEY not in json.dumps(others)
    assert recorded_access_keys(endpoint) == {ACCESS_KEY}, "the containers signed with the connection's key"

    dataset = environment["server"].dataset
    expected = sorted(
        f"docker-lake/seattle_crime/month={m}/{n}" for m in MONTHS for n in ("_manifest.json", "data.parquet")
    )
    landed = [key for key in objects(client, "docker-lake/") if not key.endswith("/")]
    assert landed == expected, "one data object and one manifest per block, no staged object left"
    for month in MONTHS:
        keys = read_block_table(BlockLocation(lake, "seattle_crime", month))["offense_id"].to_pylist()
        want = {int(row["offense_id"]) for row in dataset.rows_for_month(month)}
        assert len(keys) == len(set(keys)) == len(want) > 1000 and set(keys) == want, month
    before = {key: client.head_object(Bucket=BUCKET, Key=key)["ETag"] for key in landed}
    FIGURES.extend(
        overhead_figure(
            f"s3 seattle_crime {call['command'][5]}",
            call,
            {
                **json.loads(
                    client.get_object(
                        Bucket=BUCKET, Key=f"docker-lake/seattle_crime/month={call['command'][5]}/_manifest.json"
                    )["Body"].read()
                )
            },
        )
        for call in engine_calls
    )

    # Unchanged: both containers exit with the skip code, the tasks are skipped, nothing is rewritten.
    again = dag.test(run_conf={"start_month": MONTHS[0], "end_month": MONTHS[1]})
    skipped = sorted(ti.state for ti in again.get_task_instances() if ti.task_id == "extract_load")
    assert skipped == ["skipped", "skipped"]
    assert [call["exit_code"] for call in engine_calls[len(MONTHS) :]] == [99, 99]
    assert skipped_manifests(dag.dag_id, again.run_id) == {month: True for month in MONTHS}, (
        "each skipped block's manifest is its XCom (key manifest), as in local mode"
    )
    assert {key: client.head_object(Bucket=BUCKET, Key=key)["ETag"] for key in landed} == before
    requests.post(f"{endpoint}/moto-api/recorder/stop-recording", timeout=10).raise_for_status()

    output = "".join(capfd.readouterr())
    check_no_container_left(environment, engine_calls)
    check_secret_absent(dag.dag_id, run.run_id, output, (SECRET, SECRET_KEY))
    check_secret_absent(dag.dag_id, again.run_id, output, (SECRET, SECRET_KEY))


def test_print_container_figures(environment, capsys):
    """Not a check: the setup and per-block figures, printed into the test run's output."""
    with capsys.disabled():
        print("\n[containers] " + "\n[containers] ".join(FIGURES))
