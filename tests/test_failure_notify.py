"""Failures are not silent (issue 14, item 8): a block that fails for good sends an e-mail, through
Airflow's notifier interface and the SMTP connection ``civic_smtp``, to a real SMTP server
(aiosmtpd) listening on loopback with a login of its own.

The DAG run is real: ``dag.test(use_executor=True)`` hands each task to the LocalExecutor, whose
task process reports to the Execution API served on loopback by this test, and runs the failure
callback there, as under the scheduler. The Seattle DAG is cut to ``plan_blocks`` and
``extract_load``; the replay server answers 500 to every request. Credentials (the Socrata app token,
the SMTP password) are fake and must appear nowhere in the mail.
"""

from __future__ import annotations

import email
import json
import socket
import threading
import time
from email import policy

import pytest
import requests
from airflow_runs import execution_api, extract_side, small_dags_folder, task_log_files, task_states
from replay_env import replay_connection

SOCRATA_APP_TOKEN = "FAKE-socrata-app-token-notify-4be19d"
SMTP_LOGIN = "civic-alerts"
SMTP_PASSWORD = "FAKE-smtp-password-notify-a83c5e"
ALERT_TO = "oncall@example.org"

# aiosmtpd warns that AUTH without TLS is unsafe: the server listens on loopback only.
pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")


class Inbox:
    """What the loopback SMTP server received: (time received, login used, envelope, parsed message)."""

    def __init__(self) -> None:
        self.messages: list[dict] = []
        self.logins: list[str] = []  # every login the server accepted
        self.arrived = threading.Event()

    async def handle_DATA(self, server, session, envelope):  # aiosmtpd's handler hook
        message = email.message_from_bytes(envelope.original_content or envelope.content, policy=policy.default)
        parts = [part.get_content() for part in message.walk() if part.get_content_maintype() == "text"]
        self.messages.append(
            {
                "received": time.time(),
                "authenticated": session.authenticated,
                "rcpt_tos": list(envelope.rcpt_tos),
                "mail_from": envelope.mail_from,
                "subject": str(message["subject"]),
                "body": "\n".join(parts),
                "raw": (envelope.original_content or envelope.content).decode("utf-8", "replace"),
            }
        )
        self.arrived.set()
        return "250 Message accepted for delivery"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def smtp_server():
    """aiosmtpd on a free loopback port, accepting only SMTP_LOGIN/SMTP_PASSWORD (AUTH without TLS:
    loopback only). Yields (inbox, port)."""
    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import AuthResult, LoginPassword

    def authenticate(server, session, envelope, mechanism, auth_data):
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login.decode() == SMTP_LOGIN
            and auth_data.password.decode() == SMTP_PASSWORD
        )
        if ok:
            inbox.logins.append(auth_data.login.decode())
        return AuthResult(success=ok)

    inbox = Inbox()
    port = _free_port()
    controller = Controller(
        inbox, hostname="127.0.0.1", port=port, authenticator=authenticate, auth_required=True, auth_require_tls=False
    )
    controller.start()
    try:
        yield inbox, port
    finally:
        controller.stop()


@pytest.fixture
def notifier_log():
    """Every line the notifier logs, caught at its own logger (whatever Airflow's logging setup
    does with it after)."""
    import logging

    lines: list[str] = []

    class Catch(logging.Handler):
        def emit(self, record):
            lines.append(record.getMessage())

    logger, handler = logging.getLogger("civic_pipelines.orchestration.notify"), Catch(logging.INFO)
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield lines
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def smtp_connection(port: int, **extra) -> str:
    return json.dumps(
        {
            "conn_type": "smtp",
            "host": "127.0.0.1",
            "port": port,
            "login": SMTP_LOGIN,
            "password": SMTP_PASSWORD,
            "extra": {
                "disable_tls": True,
                "disable_ssl": True,
                "from_email": "airflow@civic.test",
                "to": ALERT_TO,
                "timeout": 10,
                "retry_limit": 0,
                **extra,
            },
        }
    )


@pytest.fixture
def environment(airflow_db, tmp_path, replay, smtp_server):
    inbox, smtp_port = smtp_server
    with pytest.MonkeyPatch.context() as patch:
        for key, value in small_dags_folder(tmp_path / "dags", ["seattle_crime"]).items():
            patch.setenv(key, value)
        patch.setenv("CIVIC_LAKE", str(tmp_path / "lake"))
        patch.setenv("CIVIC_WAREHOUSE", str(tmp_path / "warehouse.duckdb"))
        patch.setenv("AIRFLOW_CONN_CIVIC_SEATTLE_CRIME", replay_connection(replay, password=SOCRATA_APP_TOKEN))
        patch.setenv("AIRFLOW_CONN_CIVIC_SMTP", smtp_connection(smtp_port))
        patch.delenv("AIRFLOW_VAR_CIVIC_ALERT_TO", raising=False)
        patch.delenv("CIVIC_NO_AIRFLOW_LOOKUP", raising=False)
        patch.setenv("CIVIC_HTTP_BACKOFF", "0.01")  # urllib3's retries of the 500s: the failure is the point
        patch.setenv("AIRFLOW__CORE__PARALLELISM", "2")
        with execution_api() as url:
            patch.setenv("AIRFLOW__CORE__EXECUTION_API_SERVER_URL", url)
            yield {"server": replay, "inbox": inbox, "dags": tmp_path / "dags" / "civic_test_dags.py"}


def failing_extract_dag(environment):
    """The Seattle DAG's extract side with its retries off: the first failure is the last, so the
    failure callback (which Airflow runs once retries are spent) fires at once."""
    dag = extract_side("seattle_crime", environment["dags"])
    dag.get_task("extract_load").retries = 0
    return dag


def seattle_fails(environment, reliability, replay_faults: dict, *, fault: str, expected: str):
    """Record the reliability row of a Seattle block that fails with ``fault``, then switch on the
    replay's ``replay_faults`` (see /_replay/faults); returns the inbox the failure mails to."""
    reliability.row(fault=fault, source="seattle_crime", expected=expected)
    requests.post(f"{environment['server'].url}/_replay/faults", timeout=10, json=replay_faults).raise_for_status()
    return environment["inbox"]


def extract_load_log(run) -> tuple[str, list[dict]]:
    """The run's one extract_load task log: its text and its JSON events."""
    logs = [p for p in task_log_files(run.dag_id, run.run_id) if "task_id=extract_load" in str(p)]
    assert len(logs) == 1, logs
    text = logs[0].read_text()
    return text, [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def epoch(stamp: str) -> float:
    """A task log event's ISO timestamp, in seconds since the epoch."""
    from datetime import datetime

    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def test_a_failed_block_emails_the_dag_the_block_and_the_error(environment, reliability):
    inbox = seattle_fails(
        environment,
        reliability,
        {"status_500": 100_000},
        fault="failure notifies by e-mail (a block fails for good: 500 forever)",
        expected="the failed block's task mails civic_smtp's recipient (a real SMTP server with a login, "
        "on loopback): DAG, block label and error named; no secret in the mail",
    )
    run = failing_extract_dag(environment).test(
        run_conf={"start_month": "2024-01", "end_month": "2024-01"}, use_executor=True
    )
    states = task_states(run)
    assert run.state == "failed", states
    assert states == {("plan_blocks", -1): "success", ("extract_load", 0): "failed"}, states
    assert inbox.arrived.wait(30), "no e-mail arrived"
    assert len(inbox.messages) == 1, [m["subject"] for m in inbox.messages]
    mail = inbox.messages[0]
    assert mail["rcpt_tos"] == [ALERT_TO] and mail["mail_from"] == "airflow@civic.test"
    assert mail["authenticated"] and inbox.logins == [SMTP_LOGIN], "the notifier logged in with the connection's login"
    assert "seattle_crime" in mail["subject"] and "seattle_crime 2024-01" in mail["subject"]
    body = mail["body"]
    assert "DAG: seattle_crime" in body and "Task: extract_load [0]" in body and "Block: seattle_crime 2024-01" in body
    assert f"Run: {run.run_id}" in body
    assert "Error: SourceHTTPError: 500 from http://127.0.0.1:" in body and "after retries" in body, body
    for secret in (SOCRATA_APP_TOKEN, SMTP_PASSWORD):
        assert secret not in mail["raw"], "a secret went out in the mail"

    # From the failure (the task log's "Task failed with exception" event) to the mail's arrival.
    log, events = extract_load_log(run)
    failed = [e for e in events if e.get("event") == "Task failed with exception"]
    assert len(failed) == 1
    seconds = mail["received"] - epoch(failed[0]["timestamp"])
    assert 0 <= seconds < 30, seconds
    assert SMTP_PASSWORD not in log, "the SMTP password is in the task log"
    assert any("failure e-mailed to 1 recipient(s)" in str(e.get("event")) for e in events)
    reliability.observed(
        f"1 mail to {ALERT_TO} {seconds:.2f} s after the block failed, naming seattle_crime, "
        "extract_load, seattle_crime 2024-01 and the 500; neither secret in it or the log"
    )
    print(f"mail received {seconds:.2f} s after the task failed: {mail['subject']}")


def test_a_hung_block_hits_its_execution_timeout_and_mails(environment, reliability):
    inbox = seattle_fails(
        environment,
        reliability,
        {"delay": 100, "delay_seconds": 30},
        fault="a block hangs (the API answers after 30 s; execution_timeout 6 s)",
        expected="extract_load fails at its execution_timeout (Variable civic_<source>_extract_timeout_minutes) "
        "and the failure mail names the block and the timeout",
    )
    with pytest.MonkeyPatch.context() as patch:
        # Read when the DAG is built, here and in the task process that parses the DAG file.
        patch.setenv("AIRFLOW_VAR_CIVIC_SEATTLE_CRIME_EXTRACT_TIMEOUT_MINUTES", "0.1")
        dag = failing_extract_dag(environment)
        assert dag.get_task("extract_load").execution_timeout.total_seconds() == 6
        started = time.monotonic()
        run = dag.test(run_conf={"start_month": "2024-02", "end_month": "2024-02"}, use_executor=True)
    states = task_states(run)
    assert run.state == "failed" and states[("extract_load", 0)] == "failed", states
    assert inbox.arrived.wait(30), "no e-mail arrived"
    (mail,) = inbox.messages
    assert "seattle_crime 2024-02" in mail["subject"] and "Block: seattle_crime 2024-02" in mail["body"]
    assert "Error: AirflowTaskTimeout" in mail["body"], mail["body"]
    _, events = extract_load_log(run)
    first = min(e["timestamp"] for e in events)
    failed = next(e["timestamp"] for e in events if e.get("event") == "Task failed with exception")
    ran = epoch(failed) - epoch(first)
    assert 6 <= ran < 20, ran  # the task process's first log line to the timeout, not to the 30 s answer
    note = (
        f"failed {ran:.1f} s into the task (timeout 6 s, the API answering after 30 s); mail "
        f"{mail['received'] - epoch(failed):.2f} s later naming seattle_crime 2024-02 and AirflowTaskTimeout; "
        f"whole run {time.monotonic() - started:.0f} s"
    )
    reliability.observed(note)
    print(note)


def test_without_a_connection_the_failure_is_logged_in_one_line(
    airflow_db, monkeypatch, notifier_log, smtp_server, reliability
):
    """No ``civic_smtp``: one warning line, nothing sent, the callback itself does not fail."""
    reliability.row(
        fault="failure notifies by e-mail: no SMTP connection configured",
        source="toronto_311",
        expected="the notifier logs one line naming the failed block and error; the callback does not fail",
    )
    from types import SimpleNamespace

    from airflow.sdk import DAG

    from civic_pipelines.orchestration.notify import FailureNotifier

    inbox, _ = smtp_server
    monkeypatch.delenv("AIRFLOW_CONN_CIVIC_SMTP", raising=False)
    ti = SimpleNamespace(
        task_id="extract_load",
        map_index=3,
        rendered_map_index="toronto_311 2024-04",
        try_number=3,
        run_id="manual__x",
        log_url=None,
    )
    context = {
        "dag": DAG("toronto_311", schedule=None),
        "ti": ti,
        "run_id": "manual__x",
        "exception": RuntimeError("boom"),
    }
    FailureNotifier()(context)
    lines = notifier_log
    assert len(lines) == 1 and "failure not e-mailed: no connection civic_smtp" in lines[0], lines
    assert "toronto_311 2024-04" in lines[0] and "boom" in lines[0]
    assert inbox.messages == []
    reliability.observed("1 log line, 0 mails, no exception")


def test_an_unreachable_smtp_server_does_not_fail_the_callback(airflow_db, monkeypatch, notifier_log, reliability):
    reliability.row(
        fault="failure notifies by e-mail: the SMTP server refuses connections",
        source="nyc_311",
        expected="one log line with the cause, no secret; the callback does not fail",
    )
    from airflow.sdk import DAG

    from civic_pipelines.orchestration.notify import FailureNotifier

    monkeypatch.setenv("AIRFLOW_CONN_CIVIC_SMTP", smtp_connection(_free_port()))  # nothing listens there
    context = {"dag": DAG("nyc_311", schedule=None), "run_id": "scheduled__y", "reason": "timed_out"}
    started = time.monotonic()
    FailureNotifier()(context)
    lines = notifier_log
    assert len(lines) == 1 and "failure not e-mailed: " in lines[0] and "nyc_311" in lines[0], lines
    assert SMTP_PASSWORD not in lines[0]
    elapsed = time.monotonic() - started
    assert elapsed < 15
    reliability.observed(f"1 log line after {elapsed:.2f} s, no exception")


def test_a_timed_out_run_mails_and_a_task_failure_run_does_not_mail_twice(
    airflow_db, monkeypatch, smtp_server, reliability
):
    """The DAG-level notifier: a run that timed out (no task failed) mails; a run failed by a task
    does not (the task mailed already, naming its block)."""
    from airflow.sdk import DAG

    from civic_pipelines.orchestration.notify import RunFailureNotifier

    reliability.row(
        fault="failure notifies by e-mail: a run times out (dagrun_timeout)",
        source="street_manager",
        expected="the DAG-level notifier mails the run and reason; a run failed by a task mails only once",
    )

    inbox, port = smtp_server
    monkeypatch.setenv("AIRFLOW_CONN_CIVIC_SMTP", smtp_connection(port))
    monkeypatch.setenv("AIRFLOW_VAR_CIVIC_ALERT_TO", "a@example.org, b@example.org")
    dag = DAG("street_manager", schedule=None)
    RunFailureNotifier()({"dag": dag, "run_id": "scheduled__1", "reason": "task_failure"})
    assert inbox.messages == []
    RunFailureNotifier()({"dag": dag, "run_id": "scheduled__2", "reason": "timed_out"})
    assert len(inbox.messages) == 1
    mail = inbox.messages[0]
    assert mail["rcpt_tos"] == ["a@example.org", "b@example.org"], "the Variable's recipients win over the extra's"
    assert "street_manager" in mail["subject"] and "timed_out" in mail["subject"]
    assert "Run: scheduled__2" in mail["body"] and "Run failed: timed_out" in mail["body"]
    reliability.observed("timed_out: 1 mail to the Variable's 2 recipients; task_failure: 0 more")


def test_secrets_and_url_credentials_are_cleaned_from_the_error():
    from civic_pipelines.orchestration.notify import clean_error

    text = clean_error("could not reach postgresql://civic:s3cr3t-pw@db:5432/civic " + "x" * 5000)
    assert "s3cr3t-pw" not in text and "postgresql://***@db:5432/civic" in text
    assert len(text) < 2100
