"""Resolve a source's connection (base URL and credentials) the same way in and out of Airflow.

Inside Airflow the connection comes from Airflow (metadata DB, secrets backend or
``AIRFLOW_CONN_*``). In the extractor container there is no Airflow, so the same
``AIRFLOW_CONN_<ID>`` variable is parsed here, in both of Airflow's forms (URI and JSON).
With no connection at all the source's live production endpoint is used.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, unquote, urlsplit


@dataclass(frozen=True)
class SourceConnection:
    conn_id: str
    base_url: str
    login: str | None = None
    password: str | None = field(default=None, repr=False)
    extra: dict = field(default_factory=dict, repr=False)

    def __repr__(self) -> str:  # never print the secret
        return f"SourceConnection(conn_id={self.conn_id!r}, base_url={self.base_url!r})"


def env_var_name(conn_id: str) -> str:
    return f"AIRFLOW_CONN_{conn_id.upper()}"


def _base_url(host: str | None, port, schema: str | None) -> str:
    host = (host or "").rstrip("/")
    if "://" in host:
        base = host
    else:
        # Airflow's HTTP connections keep the URL scheme in `schema`; public APIs default to TLS.
        scheme = schema if schema in ("http", "https") else "https"
        base = f"{scheme}://{host}"
    if port:
        base = f"{base}:{port}"
    return base


def parse_connection(conn_id: str, value: str) -> SourceConnection:
    """Parse an ``AIRFLOW_CONN_*`` value: JSON (``{"conn_type": ..., "host": ...}``) or URI."""
    value = value.strip()
    if value.startswith("{"):
        data = json.loads(value)
        extra = data.get("extra") or {}
        if isinstance(extra, str):
            extra = json.loads(extra) if extra else {}
        return SourceConnection(
            conn_id=conn_id,
            base_url=_base_url(data.get("host"), data.get("port"), data.get("schema")),
            login=data.get("login"),
            password=data.get("password"),
            extra=extra,
        )
    parts = urlsplit(value)
    query = dict(parse_qsl(parts.query))
    extra = json.loads(query.pop("__extra__")) if "__extra__" in query else query
    schema = unquote(parts.path.lstrip("/")) or None
    host = parts.hostname or ""
    return SourceConnection(
        conn_id=conn_id,
        base_url=_base_url(host, parts.port, schema),
        login=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
        extra=extra,
    )


def _from_airflow(conn_id: str) -> SourceConnection | None:
    try:
        from airflow.sdk import BaseHook
    except ImportError:  # the slim extractor image has no Airflow
        return None
    try:
        conn = BaseHook.get_connection(conn_id)
    except Exception:  # noqa: BLE001 - "not found" has different types across Airflow versions
        return None
    return SourceConnection(
        conn_id=conn_id,
        base_url=_base_url(conn.host, conn.port, conn.schema),
        login=conn.login,
        password=conn.password,
        extra=conn.extra_dejson,
    )


def lookup(conn_id: str) -> SourceConnection | None:
    """The connection from ``AIRFLOW_CONN_<ID>``, else from Airflow (unless ``CIVIC_NO_AIRFLOW_LOOKUP=1``);
    None when neither has it."""
    value = os.environ.get(env_var_name(conn_id))
    if value:
        return parse_connection(conn_id, value)
    if os.environ.get("CIVIC_NO_AIRFLOW_LOOKUP") != "1":
        return _from_airflow(conn_id)
    return None


def resolve(conn_id: str, default_base_url: str) -> SourceConnection:
    found = lookup(conn_id)
    return found if found is not None else SourceConnection(conn_id=conn_id, base_url=default_base_url)


def block_conn_ids(source: str, part: str | None = None, lake: str | None = None) -> list[str]:
    """Every connection id one block's extraction may read, in order: the source's own, those
    its part names (a source module's ``connection_ids(part)``: an MDS provider's
    ``civic_mds_<provider>``), and the lake's (type ``aws``) when the lake is ``s3://``. What
    docker mode hands the extractor container, which has no Airflow to ask."""
    from civic_pipelines import settings, sources

    module = sources.get(source)
    ids = [module.SPEC.conn_id]
    if part is not None and callable(getattr(module, "connection_ids", None)):
        ids.extend(module.connection_ids(part))
    if (lake or settings.lake_url()).startswith("s3://"):
        ids.append(settings.lake_conn_id())
    return list(dict.fromkeys(ids))
