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
No container is left behind; the landed files belong to the user running the tests.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import sys
import time
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

import container_setup  # noqa: E402

MONTHS = ["2024-01", "2024-02"]
SECRET = "app-token-" + secrets.token_hex(12)
CONNECTIONS = {"seattle_crime": "AIRFLOW_CONN_CIVIC_SEATTLE_CRIME", "nyc_311": "AIRFLOW_CONN_CIVIC_NYC_311"}
FIGURES: list[str] = []


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    """The extractor image (built once, then cached) and the Docker API on a socket of this module."""
    done = container_setup.setup()
    FIGURES.append(
        "setup: " + ("cached" if done.cached else "built") + ", "
        + ", ".join(f"{name} {seconds:.1f} s" for name, seconds in done.seconds.items()) + f"; image {done.image}"
    )
    service = container_setup.Service(tmp_path_factory.mktemp("podman"), done.env)
    started = time.monotonic()
    service.start()
    FIGURES.append(f"API service up in {time.monotonic() - started:.1f} s on {service.url}")
    try:
        yield {"setup": done, "service": service}
    finally:
        service.stop()


@pytest.fixture(scope="module")
def environment(engine, airflow_db, run_dir):
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
        "AIRFLOW_VAR_CIVIC_EXTRACTOR_IMAGE": engine["setup"].image,
        "AIRFLOW_VAR_CIVIC_DOCKER_URL": engine["service"].url,
        "AIRFLOW_VAR_CIVIC_DOCKER_NETWORK": "host",  # the replay listens on the host's loopback
        "AIRFLOW_VAR_CIVIC_DOCKER_USER": f"{os.geteuid()}:{os.getegid()}",  # the lake's files stay the test user's
        **{variable: conn for variable in CONNECTIONS.values()},
    }
    with pytest.MonkeyPatch.context() as patch:
        for key, value in settings.items():
            patch.setenv(key, value)
        try:
            yield {"server": server, "tokens": tokens, "data": data, "lake": data / "lake",
                   "local_lake": data / "local_lake", **engine}
        finally:
            server.stop()


@pytest.fixture
def engine_calls(monkeypatch):
    """What the operator asks the engine for (command, environment, host config) and when each
    container starts and ends, recorded on the way through docker-py's APIClient."""
    import docker

    calls: list[dict] = []
    create, start, wait = docker.APIClient.create_container, docker.APIClient.start, docker.APIClient.wait

    def record_create(self, *args, **kwargs):
        container = create(self, *args, **kwargs)
        calls.append({"id": container["Id"], "command": kwargs.get("command"), "environment": kwargs.get("environment"),
                      "host_config": kwargs.get("host_config"), "image": kwargs.get("image"), "user": kwargs.get("user"),
                      "created": time.monotonic()})
        return container

    def record_start(self, container, *args, **kwargs):
        for call in calls:
            if call["id"] == container:
                call["started"] = time.monotonic()
        return start(self, container, *args, **kwargs)

    def record_wait(self, container, *args, **kwargs):
        result = wait(self, container, *args, **kwargs)
        for call in calls:
            if call["id"] == container:
                call["ended"] = time.monotonic()
        return result

    monkeypatch.setattr(docker.APIClient, "create_container", record_create)
    monkeypatch.setattr(docker.APIClient, "start", record_start)
    monkeypatch.setattr(docker.APIClient, "wait", record_wait)
    return calls


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
    FIGURES.append(f"{source}: DAG built in {built - started:.1f} s; dag.test() of {', '.join(tasks)} "
                   f"(and upstream) {time.monotonic() - built:.1f} s")
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
        assert call["command"][6:] == ["--lake", "/lake"]
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


def check_secret_absent(dag_id: str, run_id: str, output: str) -> None:
    """Neither the task logs (console and files), the rendered fields nor the XComs hold the token."""
    from airflow.models.renderedtifields import RenderedTaskInstanceFields
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    assert SECRET not in output, "the secret was printed"
    logs = Path(os.environ["AIRFLOW_HOME"]) / "logs"
    for path in logs.rglob("*") if logs.exists() else []:
        if path.is_file() and f"dag_id={dag_id}" in str(path):
            assert SECRET not in path.read_text(errors="replace"), path
    with create_session() as session:
        rendered = session.query(RenderedTaskInstanceFields).filter_by(dag_id=dag_id, run_id=run_id).all()
        xcoms = session.query(XComModel).filter_by(dag_id=dag_id, run_id=run_id).all()
        commands = [r.rendered_fields.get("command") for r in rendered if r.task_id == "extract_load"]
        assert len(commands) == len(MONTHS) and all(c and c[:2] == ["civic", "extract"] for c in commands), commands
        assert SECRET not in json.dumps([r.rendered_fields for r in rendered], default=str)
        assert SECRET not in json.dumps([x.value for x in xcoms], default=str)


def record_figures(source: str, calls: list[dict], environment) -> None:
    for call in sorted(calls, key=lambda c: c["command"][5]):
        month = call["command"][5]
        manifest = json.loads((block_folder(environment["lake"], source, month) / "_manifest.json").read_text())
        container = call["ended"] - call["started"]
        FIGURES.append(
            f"{source} {month}: {manifest['rows']:,} rows; container create {call['started'] - call['created']:.2f} s, "
            f"start -> exit {container:.2f} s, of which extract {manifest['seconds']:.2f} s "
            f"(overhead {container - manifest['seconds']:.2f} s: runtime + interpreter + imports)"
        )


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
        got = [row[0] for row in con.sql(f"select cast(offense_id as bigint) from read_parquet('{pattern}')").fetchall()]
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


def test_print_container_figures(environment, capsys):
    """Not a check: the setup and per-block figures, printed into the test run's output."""
    with capsys.disabled():
        print("\n[containers] " + "\n[containers] ".join(FIGURES))
