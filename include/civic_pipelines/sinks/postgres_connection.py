"""The PostgreSQL sink's connection: an Airflow connection's fields or an ``AIRFLOW_CONN_*`` value
(JSON or URI) parsed into libpq parameters, the connect, and its secrets kept out of error text.

Where the connection comes from (the environment, then Airflow) is decided by
:func:`civic_pipelines.sinks.postgres.resolve_connection`: the Airflow lookup and the log masker stay
in that module, the one sink module allowed to import Airflow.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, unquote, urlsplit

CONN_ID = "civic_postgres"
# libpq parameters an Airflow connection's extras may carry (others, like the provider's
# "cursor" or "iam", are the hook's business and ignored here).
LIBPQ_EXTRAS = (
    "sslmode",
    "sslrootcert",
    "sslcert",
    "sslkey",
    "sslpassword",
    "connect_timeout",
    "options",
    "target_session_attrs",
    "application_name",
    "keepalives",
    "keepalives_idle",
    "channel_binding",
)
SECRET_EXTRAS = ("sslpassword",)


class PostgresSyncError(RuntimeError):
    """A block could not be synced (its transaction was rolled back), or the server is unreachable."""


@dataclass(frozen=True)
class PostgresConnection:
    host: str | None = None
    port: int | None = None
    dbname: str | None = None
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    options: dict = field(default_factory=dict, repr=False)

    def describe(self) -> str:
        """``user@host:port/db``, for logs: never the password."""
        return f"{self.user or ''}@{self.host or 'localhost'}:{self.port or 5432}/{self.dbname or ''}"

    def __repr__(self) -> str:
        return f"PostgresConnection({self.describe()})"

    def secrets(self) -> list[str]:
        return [s for s in [self.password, *(str(self.options.get(k) or "") for k in SECRET_EXTRAS)] if s]

    def connect(self):
        """An autocommit psycopg connection (transactions are explicit, one per block)."""
        import psycopg

        params = {
            "host": self.host,
            "port": self.port,
            "dbname": self.dbname,
            "user": self.user,
            "password": self.password,
        }
        params = {k: v for k, v in params.items() if v not in (None, "")}
        params.update({k: v for k, v in self.options.items() if v not in (None, "")})
        params.setdefault("application_name", "civic-pipelines sync")
        params.setdefault("connect_timeout", 10)
        try:
            return psycopg.connect(autocommit=True, **params)
        except psycopg.Error as error:
            # `from None`: the original exception is not chained into the traceback.
            raise PostgresSyncError(
                f"cannot connect to PostgreSQL {self.describe()}: {scrub(str(error), self.secrets())}"
            ) from None


def scrub(text: str, secrets: list[str]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def connection_from_fields(host, port, schema, login, password, extra) -> PostgresConnection:
    if isinstance(extra, str):
        extra = json.loads(extra) if extra.strip() else {}
    options = {k: v for k, v in (extra or {}).items() if k in LIBPQ_EXTRAS}
    return PostgresConnection(
        host=host or None,
        port=int(port) if port not in (None, "") else None,
        dbname=schema or None,
        user=login or None,
        password=password or None,
        options=options,
    )


def parse_connection(value: str) -> PostgresConnection:
    """An ``AIRFLOW_CONN_*`` value, JSON (``{"conn_type": "postgres", "host": ..., "schema": db}``) or
    URI (``postgres://user:password@host:5432/db?sslmode=require``)."""
    value = value.strip()
    if value.startswith("{"):
        data = json.loads(value)
        return connection_from_fields(
            data.get("host"),
            data.get("port"),
            data.get("schema"),
            data.get("login"),
            data.get("password"),
            data.get("extra"),
        )
    parts = urlsplit(value)
    query = dict(parse_qsl(parts.query))
    extra = json.loads(query.pop("__extra__")) if "__extra__" in query else query
    hostport = parts.netloc.rpartition("@")[2]
    if parts.port is not None:
        hostport = hostport[: hostport.rfind(":")]
    return connection_from_fields(
        unquote(hostport).strip("[]"),
        parts.port,
        unquote(parts.path.lstrip("/")),
        unquote(parts.username) if parts.username else None,
        unquote(parts.password) if parts.password else None,
        extra,
    )
