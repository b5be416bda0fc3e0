"""Secrets never printed: DAG runs with credentials set, then every task log file of each run, every
XCom value, every rendered template field and every landed manifest is searched for them.

The runs are real: ``dag.test(use_executor=True)`` hands each task to the LocalExecutor, whose
forked supervisor runs it in a task process that reports to Airflow's Execution API (served on
loopback by this test) and writes its log file under ``$AIRFLOW_HOME/logs``, as under the scheduler.
The DAGs are the sources' own, cut to ``plan_blocks`` and ``extract_load`` (the tasks that hold
source credentials; the dbt tasks get none). Credentials come the two ways a deployment gives them:
Seattle's Socrata app token from a connection in the metadata database (the UI's way), the MDS
providers' bearer token and OAuth2 client secret from ``AIRFLOW_CONN_*`` variables (the
container's way). The replay server adds retries (429, 500, a reset mid-page) and short-lived OAuth2
tokens, so the logs carry retry warnings and token refreshes, not only the happy path.
All tokens are fake.
"""

from __future__ import annotations

import base64
import json
from urllib.parse import quote

import pyarrow.parquet as pq
import pytest
import requests
from airflow_runs import execution_api, extract_side, run_rows, small_dags_folder, task_log_files, task_states
from replay_env import module_environment, replay_connection

SOCRATA_APP_TOKEN = "FAKE-socrata-app-token-7f3a9c41e2"
MDS_BEARER = "FAKE-mds-bearer-lyft-91c2e4b7d0"
MDS_CLIENT_ID = "civic-test-client"
MDS_CLIENT_SECRET = "FAKE-mds-client-secret-voi-5d8b0a63f1"


def forms(secret: str, login: str | None = None) -> set[str]:
    """The secret as written, URL-encoded, and (with a login) as the HTTP Basic credential."""
    found = {secret, quote(secret, safe="")}
    if login:
        found.add(base64.b64encode(f"{login}:{secret}".encode()).decode())
    return found


@pytest.fixture(scope="module")
def environment(airflow_db, tmp_path_factory):
    from airflow.models.connection import Connection
    from airflow.utils.session import create_session

    def providers(server) -> None:
        requests.post(
            f"{server.url}/_replay/config",
            timeout=30,
            json={
                "mds": {
                    "trips_per_hour": 1,
                    "events_per_hour": 1,
                    "token_max_uses": 300,  # voi's OAuth2 tokens run out during the month: the client fetches new ones
                    "providers": {
                        "voi": {
                            "version": "2.0",
                            "auth": "oauth2",
                            "client_id": MDS_CLIENT_ID,
                            "client_secret": MDS_CLIENT_SECRET,
                            "voi_quirks": True,
                        },
                        "lyft": {"version": "2.0", "auth": "bearer", "token": MDS_BEARER},
                        "bolt": None,
                        "dott": None,
                    },
                }
            },
        ).raise_for_status()

    def connections(server) -> dict[str, str]:
        return {
            f"AIRFLOW_CONN_CIVIC_MDS_{provider.upper()}": json.dumps(server.mds.connection(provider))
            for provider in ("voi", "lyft")
        }

    root = tmp_path_factory.mktemp("secrets")
    dags = small_dags_folder(root / "dags", ["seattle_crime", "mds"])
    with module_environment(
        root,
        configure=providers,
        connections=connections,
        **dags,
        AIRFLOW_VAR_CIVIC_MDS_PROVIDERS=json.dumps(["voi", "lyft"]),
        AIRFLOW_VAR_CIVIC_MDS_DISTRICTS_PATH="",
        AIRFLOW_VAR_CIVIC_MDS_DISTRICT_PROPERTY="",
        AIRFLOW__CORE__PARALLELISM="2",
    ) as environment:
        server, patch = environment["server"], environment["patch"]
        patch.delenv("AIRFLOW_CONN_CIVIC_SEATTLE_CRIME", raising=False)  # the metadata DB's, not an env var
        patch.delenv("CIVIC_NO_AIRFLOW_LOOKUP", raising=False)
        with create_session() as session:
            session.query(Connection).filter(Connection.conn_id == "civic_seattle_crime").delete()
            session.add(
                Connection(
                    conn_id="civic_seattle_crime", **json.loads(replay_connection(server, password=SOCRATA_APP_TOKEN))
                )
            )
        try:
            with execution_api() as url:
                patch.setenv("AIRFLOW__CORE__EXECUTION_API_SERVER_URL", url)
                yield {"server": server, "root": root, "dags": root / "dags" / "civic_test_dags.py"}
        finally:
            with create_session() as session:
                session.query(Connection).filter(Connection.conn_id == "civic_seattle_crime").delete()


def run_for_real(environment, dag_id: str, conf: dict):
    """The source's DAG (plan_blocks and extract_load), each task in its own process with a log file."""
    return extract_side(dag_id, environment["dags"]).test(run_conf=conf, use_executor=True)


def tokens_sent(server, header: str) -> list:
    """Record the ``header`` of every request the replay server answers (proof the secret was in use)."""
    seen, dispatch = [], server.dispatch

    def recording(request):
        if not request.path.startswith("/_replay/"):
            seen.append({k.lower(): v for k, v in request.headers.items()}.get(header.lower()))
        return dispatch(request)

    server.dispatch = recording
    return seen


def run_recording(environment, capfd, dag_id: str, conf: dict, header: str) -> tuple:
    """The DAG run for real while the replay records each request's ``header``: the run, its task
    states (the run succeeded), the output captured so far and the headers sent."""
    sent = tokens_sent(environment["server"], header)
    run = run_for_real(environment, dag_id, conf)
    captured = "".join(capfd.readouterr())
    states = task_states(run)
    assert run.state == "success", states
    return run, states, captured, sent


def scan(run, environment, secrets: set[str], captured: str) -> dict:
    """Every place the run wrote text: log files, XComs, rendered fields, manifests, our own output."""
    places = {
        f"log {p.relative_to(p.parents[2])}": p.read_text(errors="replace")
        for p in task_log_files(run.dag_id, run.run_id)
    }
    rows = run_rows(run.run_id, run.dag_id)
    places.update({f"xcom {k}": v for k, v in rows["xcom"].items()})
    places.update({f"rendered {k}": v for k, v in rows["rendered"].items()})
    places.update(
        {
            f"manifest {p.relative_to(environment['root'])}": p.read_text()
            for p in (environment["root"] / "lake" / run.dag_id).rglob("_manifest.json")
        }
    )
    places["dag.test output"] = captured
    leaks = [(place, secret[:12] + "...") for place, text in places.items() for secret in secrets if secret in text]
    assert not leaks, f"secrets found: {leaks}"
    return places


def test_a_socrata_app_token_never_appears_in_logs_xcoms_or_rendered_fields(environment, capfd, reliability):
    reliability.row(
        fault="secrets: Socrata app token on the connection (metadata DB)",
        source="seattle_crime",
        expected="no task log, XCom, rendered field or manifest of the run holds the token",
    )
    server = environment["server"]
    requests.post(
        f"{server.url}/_replay/faults",
        timeout=10,
        json={"status_429": 1, "retry_after": 1, "status_500": 2, "reset_mid_page": 1},
    ).raise_for_status()
    run, states, captured, sent = run_recording(
        environment, capfd, "seattle_crime", {"start_month": "2024-01", "end_month": "2024-02"}, "X-App-Token"
    )
    assert states == {("plan_blocks", -1): "success", ("extract_load", 0): "success", ("extract_load", 1): "success"}
    fired = requests.get(f"{server.url}/_replay/faults", timeout=10).json()["fired"]
    assert fired["status_429"] == 1 and fired["status_500"] == 2 and fired["reset_mid_page"] == 1
    assert sent and set(sent) == {SOCRATA_APP_TOKEN}, "the token went to the API on every request"
    places = scan(run, environment, forms(SOCRATA_APP_TOKEN), captured)
    logs = {k: v for k, v in places.items() if k.startswith("log ")}
    assert len(logs) == 3, sorted(logs)  # one log file per task instance, one attempt each
    extract_logs = "".join(v for k, v in logs.items() if "extract_load" in k)
    assert extract_logs.count(" landed: ") == 2 and "Connection reset by peer" in extract_logs
    assert (
        sum(1 for k in places if k.startswith("xcom ")) >= 3
        and sum(1 for k in places if k.startswith("rendered ")) == 3
    )
    masked = sum(text.count("***") for text in logs.values())
    reliability.observed(
        f"{len(places)} places scanned ({len(logs)} task log files, XComs, rendered fields, manifests) "
        f"after 429/500/reset retries: token found 0 times; {masked} masked values in the logs"
    )


def test_mds_bearer_tokens_and_oauth2_secrets_never_appear(environment, capfd, reliability):
    reliability.row(
        fault="secrets: MDS bearer token and OAuth2 client secret (AIRFLOW_CONN_* variables), issued access tokens",
        source="mds",
        expected="no task log, XCom, rendered field or manifest of the run holds any of them",
    )
    run, states, captured, sent = run_recording(
        environment, capfd, "mds", {"start_month": "2024-02", "end_month": "2024-02"}, "Authorization"
    )
    assert sorted(k for k, v in states.items() if v == "success") == [
        ("extract_load", 0),
        ("extract_load", 1),
        ("plan_blocks", -1),
    ]
    issued = environment["server"].mds.issued_tokens()
    assert len(issued) >= 3, "voi's tokens ran out during the month and were fetched again"
    basic = "Basic " + base64.b64encode(f"{MDS_CLIENT_ID}:{MDS_CLIENT_SECRET}".encode()).decode()
    assert f"Bearer {MDS_BEARER}" in sent and basic in sent, "both credentials went to the replay"
    assert {f"Bearer {token}" for token in issued} <= set(sent)
    secrets = forms(MDS_BEARER) | forms(MDS_CLIENT_SECRET, MDS_CLIENT_ID) | set(issued)
    places = scan(run, environment, secrets, captured)
    logs = {k: v for k, v in places.items() if k.startswith("log ")}
    assert len(logs) == 3, sorted(logs)
    for provider in ("voi", "lyft"):
        trips = pq.read_table(environment["root"] / "lake" / "mds" / provider / "month=2024-02" / "data.parquet")
        assert trips.num_rows > 500
    masked = sum(text.count("***") for text in logs.values())
    reliability.observed(
        f"{len(places)} places scanned ({len(logs)} task log files, XComs, rendered fields, manifests); "
        f"bearer, client secret (also as HTTP Basic) and {len(issued)} issued access tokens found 0 "
        f"times; {masked} masked values in the logs"
    )
