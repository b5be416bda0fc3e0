"""Resolve a source's connection (base URL and credentials) the same way in and out of Airflow.

Inside Airflow the connection comes from Airflow (metadata DB, secrets backend or
``AIRFLOW_CONN_*``). In the extractor container there is no Airflow, so the same
``AIRFLOW_CONN_<ID>`` variable is parsed here, in both of Airflow's forms (URI and JSON), field
by field as ``airflow.sdk.Connection.from_uri`` / ``from_json`` read them (a host written by
``Connection.get_uri()`` with its path percent-encoded, ``api.voiapp.io%2Fv1%2Fmds``, is decoded;
a host with its own protocol, ``http://https://host``, keeps it). The base URL is then built as the
http provider's ``HttpHook`` builds it: a host holding ``://`` is the URL, else
``{schema or "http"}://{host}``, then ``:{port}``. With no connection at all the source's live
production endpoint is used.
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
    # Airflow's own fields, as read (the base URL is made from them).
    conn_type: str | None = None
    host: str | None = None
    schema: str | None = None
    port: int | None = None

    def __repr__(self) -> str:  # never print the secret
        return f"SourceConnection(conn_id={self.conn_id!r}, base_url={self.base_url!r})"


def env_var_name(conn_id: str) -> str:
    return f"AIRFLOW_CONN_{conn_id.upper()}"


def http_base_url(host: str | None, port, schema: str | None, conn_type: str | None = None) -> str:
    """The base URL as ``HttpHook._set_base_url`` makes it (apache-airflow-providers-http):
    a host with ``://`` is taken whole, else the scheme is the connection's ``schema`` or, when that
    is empty, ``http``; a port is appended. One addition: a URI written ``https://host`` (conn type
    ``https``, which the http provider does not define) keeps ``https``, as the person meant."""
    host = host or ""
    if not host:  # HttpHook would say "http://": no endpoint at all, which callers test for
        return ""
    if "://" in host:
        base = host
    else:
        default = "https" if (conn_type or "").lower() == "https" else "http"
        scheme = schema or default
        base = f"{scheme}://{host}"
    if port:
        base = f"{base}:{port}"
    return base.rstrip("/")


def _normalize_conn_type(conn_type: str | None) -> str | None:
    # As Connection._normalize_conn_type.
    if not conn_type:
        return conn_type
    if conn_type == "postgresql":
        return "postgres"
    return conn_type.replace("-", "_")


def _netloc_hostname(parts) -> str:
    # As airflow.sdk.definitions.connection._parse_netloc_to_hostname: an encoded path in the host
    # (``host%2Fpath``) is decoded, and keeps its case (``hostname`` lower-cases it).
    hostname = unquote(parts.hostname or "")
    if "/" in hostname:
        hostname = parts.netloc
        if "@" in hostname:
            hostname = hostname.rsplit("@", 1)[1]
        if ":" in hostname:
            hostname = hostname.split(":", 1)[0]
        hostname = unquote(hostname)
    return hostname


def airflow_fields_from_uri(uri: str) -> dict:
    """The fields ``Connection.from_uri`` reads from a URI (conn_type, host, schema, login,
    password, port, extra as a dict)."""
    if uri.count("://") > 2:
        raise ValueError("invalid connection URI: more than two '://'")
    host_with_protocol = uri.count("://") == 2
    conn_type = urlsplit(uri).scheme
    rest = uri.replace(f"{conn_type}://", "" if host_with_protocol else "//")
    if host_with_protocol and ("@" in rest.split("://", 1)[0] or ":" in rest.split("://", 1)[0]):
        raise ValueError("invalid connection URI: a protocol in the host must come before any login or port")
    parts = urlsplit(rest)
    host = _netloc_hostname(parts)
    if host and host_with_protocol:
        host = f"{parts.scheme}://{host}"
    schema = unquote(parts.path[1:]) if parts.path[1:] else ""
    extra: dict = {}
    if parts.query:
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        extra = json.loads(query["__extra__"]) if "__extra__" in query else query
    return {
        "conn_type": _normalize_conn_type(conn_type),
        "host": host or None,
        "schema": schema or None,
        "login": unquote(parts.username) if parts.username else parts.username,
        "password": unquote(parts.password) if parts.password else parts.password,
        "port": parts.port,
        "extra": extra,
    }


def airflow_fields_from_json(value: str) -> dict:
    """The fields ``Connection.from_json`` reads (extra may be a dict or a JSON string)."""
    data = json.loads(value)
    extra = data.get("extra") or {}
    if isinstance(extra, str):
        extra = json.loads(extra) if extra else {}
    port = data.get("port")
    return {
        "conn_type": _normalize_conn_type(data.get("conn_type")),
        "host": data.get("host") or None,
        "schema": data.get("schema") or None,
        "login": data.get("login"),
        "password": data.get("password"),
        "port": int(port) if port else None,
        "extra": extra,
    }


def _from_fields(conn_id: str, fields: dict) -> SourceConnection:
    return SourceConnection(
        conn_id=conn_id,
        base_url=http_base_url(fields["host"], fields["port"], fields["schema"], fields["conn_type"]),
        login=fields["login"],
        password=fields["password"],
        extra=fields["extra"],
        conn_type=fields["conn_type"],
        host=fields["host"],
        schema=fields["schema"],
        port=fields["port"],
    )


def parse_connection(conn_id: str, value: str) -> SourceConnection:
    """Parse an ``AIRFLOW_CONN_*`` value: JSON (``{"conn_type": ..., "host": ...}``) or URI."""
    value = value.strip()
    fields = airflow_fields_from_json(value) if value.startswith("{") else airflow_fields_from_uri(value)
    return _from_fields(conn_id, fields)


def _from_airflow(conn_id: str) -> SourceConnection | None:
    try:
        from airflow.sdk import BaseHook
    except ImportError:  # the slim extractor image has no Airflow
        return None
    try:
        conn = BaseHook.get_connection(conn_id)
    except Exception:  # noqa: BLE001 - "not found" has different types across Airflow versions
        return None
    return _from_fields(
        conn_id,
        {
            "conn_type": conn.conn_type,
            "host": conn.host or None,
            "schema": conn.schema or None,
            "login": conn.login,
            "password": conn.password,
            "port": conn.port,
            "extra": conn.extra_dejson,
        },
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
    its part names (``SPEC.part_conn_id``: an MDS provider's
    ``civic_mds_<provider>``), and the lake's (type ``aws``) when the lake is ``s3://``. What
    docker mode hands the extractor container, which has no Airflow to ask."""
    from civic_pipelines import settings, sources

    ids = sources.spec(source).conn_ids(part)
    if (lake or settings.lake_url()).startswith("s3://"):
        ids.append(settings.lake_conn_id())
    return list(dict.fromkeys(ids))
