"""Failure e-mails: the notifier every DAG and task of the project calls when something fails.

It is an Airflow notifier (``airflow.sdk.BaseNotifier``), so it runs wherever Airflow runs failure
callbacks: in the task's own process when a task (a block of ``extract_load``, a dbt node) fails
for good, and in the DAG processor when a run fails without a task failing (``dagrun_timeout``).
The mail goes out through the SMTP provider's ``SmtpNotifier`` and the Airflow connection
``civic_smtp`` (conn type ``smtp``: host, port, login, password; extras ``from_email``,
``disable_tls``/``disable_ssl``, ``timeout``, ``retry_limit`` as the provider reads them, and
``to``). Recipients: the Variable ``civic_alert_to`` (comma-separated), else the connection's
extra ``to``.

No connection, or no recipient: one log line and nothing else. A notifier must never turn a
failure into a second one, so any error while sending is logged too, not raised.

The message names the DAG, the run, the failed task and its block (the mapped task's label,
e.g. ``seattle_crime 2024-01``) and the error, with every secret Airflow knows of masked and
credentials in URLs removed.
"""

from __future__ import annotations

import html
import logging
import re

from airflow.sdk import BaseNotifier

log = logging.getLogger(__name__)

SMTP_CONN_ID = "civic_smtp"
RECIPIENTS_VARIABLE = "civic_alert_to"
DEFAULT_FROM = "civic-pipelines@localhost"
MAX_ERROR_CHARS = 2000
# user:password@ in a URL an error message may quote (a connection's URI form).
_URL_CREDENTIALS = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)[^/\s@:]+:[^/\s@]+@", re.IGNORECASE)


def clean_error(text: str) -> str:
    """The error as the mail shows it: secrets masked, URL credentials dropped, bounded length."""
    from airflow.sdk.log import redact

    text = str(redact(text))
    text = _URL_CREDENTIALS.sub(r"\g<scheme>***@", text)
    if len(text) > MAX_ERROR_CHARS:
        text = text[:MAX_ERROR_CHARS] + " …"
    return text


def failure_message(context) -> tuple[str, str]:
    """(subject, plain-text body) for a failure callback's context, task or DAG level."""
    dag = context.get("dag")
    dag_id = getattr(dag, "dag_id", None) or context.get("dag_id") or "?"
    ti = context.get("ti") or context.get("task_instance")
    run_id = context.get("run_id") or getattr(ti, "run_id", None) or "?"
    reason = context.get("reason")  # DAG-level callbacks: task_failure, timed_out, ...
    error = context.get("exception")
    lines = [f"DAG: {dag_id}", f"Run: {run_id}"]
    what = dag_id
    if ti is not None and reason is None:
        task_id = ti.task_id
        label = getattr(ti, "rendered_map_index", None) or _block_label(
            context.get("task") or getattr(ti, "task", None)
        )
        map_index = getattr(ti, "map_index", -1)
        block = label or (f"map index {map_index}" if map_index not in (None, -1) else None)
        lines.append(f"Task: {task_id}" + (f" [{map_index}]" if map_index not in (None, -1) else ""))
        if block:
            lines.append(f"Block: {block}")
        lines.append(f"Try: {getattr(ti, 'try_number', '?')}")
        what = f"{dag_id} / {task_id}" + (f" / {block}" if block else "")
    else:
        lines.append(f"Run failed: {reason or 'unknown reason'}")
        if ti is not None:
            lines.append(f"Last task: {ti.task_id}")
    if error is not None:
        detail = f"{type(error).__name__}: {error}" if isinstance(error, BaseException) else str(error)
    else:
        detail = reason or "no error text (see the task log)"
    lines.append(f"Error: {clean_error(detail)}")
    if ti is not None and getattr(ti, "log_url", None):
        lines.append(f"Log: {ti.log_url}")
    first_line = (clean_error(detail).splitlines() or [""])[0]
    if len(first_line) > 100:
        first_line = first_line[:100] + " …"
    subject = f"[civic-pipelines] failed: {what}: {first_line}"
    return subject, "\n".join(lines) + "\n"


def _block_label(task) -> str | None:
    """The block a mapped extract task was given, from its expanded input: the map index label is
    rendered only once the task body has run, so a block killed by its ``execution_timeout`` has none."""
    for block in (getattr(task, "block", None), (getattr(task, "op_kwargs", None) or {}).get("block")):
        if isinstance(block, dict) and block.get("label"):
            return str(block["label"])
    return None


def recipients(connection) -> list[str]:
    from civic_pipelines.orchestration.variables import get_variable

    value = get_variable(RECIPIENTS_VARIABLE, None) or (connection.extra_dejson or {}).get("to") or ""
    if isinstance(value, (list, tuple)):
        return [str(v).strip() for v in value if str(v).strip()]
    return [part.strip() for part in str(value).replace(";", ",").split(",") if part.strip()]


class FailureNotifier(BaseNotifier):
    """E-mails a failure through ``civic_smtp``; logs one line instead when it is not configured."""

    # Nothing templated: an error text containing "{{" must reach the mail as it is.
    template_fields = ()

    def __init__(self, smtp_conn_id: str = SMTP_CONN_ID):
        super().__init__()
        self.smtp_conn_id = smtp_conn_id

    def render_template_fields(self, context, jinja_env=None) -> None:
        # Nothing to render, and no Jinja environment to build: Airflow's in-process DAG callbacks
        # (dag.test) hand the notifier a serialized DAG, which cannot make one.
        return None

    def _connection(self):
        from airflow.sdk import BaseHook
        from airflow.sdk.exceptions import AirflowNotFoundException

        try:
            return BaseHook.get_connection(self.smtp_conn_id)
        except AirflowNotFoundException:
            return None

    def notify(self, context) -> None:
        subject, body = failure_message(context)
        try:
            connection = self._connection()
            if connection is None:
                log.warning("failure not e-mailed: no connection %s (%s)", self.smtp_conn_id, subject)
                return
            to = recipients(connection)
            if not to:
                log.warning(
                    "failure not e-mailed: no recipient (Variable %s or %s extra 'to') (%s)",
                    RECIPIENTS_VARIABLE,
                    self.smtp_conn_id,
                    subject,
                )
                return
            from airflow.providers.smtp.notifications.smtp import SmtpNotifier

            SmtpNotifier(
                to=to,
                from_email=(connection.extra_dejson or {}).get("from_email") or DEFAULT_FROM,
                subject=subject,
                html_content=f"<pre>{html.escape(body)}</pre>",
                smtp_conn_id=self.smtp_conn_id,
            ).notify(context)
            log.info("failure e-mailed to %d recipient(s): %s", len(to), subject)
        except Exception as error:  # noqa: BLE001 - a failing notifier must not fail the callback
            log.warning("failure not e-mailed: %s: %s (%s)", type(error).__name__, clean_error(str(error)), subject)


class RunFailureNotifier(FailureNotifier):
    """The DAG-level callback: e-mails only a run that failed without a task failing (timed out,
    deadlocked); each failed task already sent its own mail naming its block."""

    def notify(self, context) -> None:
        if context.get("reason") == "task_failure":
            log.info("run %s failed by a task failure: the task's own notifier reported it", context.get("run_id"))
            return
        super().notify(context)
