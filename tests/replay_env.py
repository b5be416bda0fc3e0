"""The replay server as tests point the project at it: one connection JSON for every source's
``AIRFLOW_CONN_<ID>``, and one context that starts a server with a lake, a warehouse and
connections of its own (the end-to-end modules' environments and the dbt modules' lakes).

Plain functions, not fixtures, so a module-scoped fixture and a test body can both use them; the
fixtures built on them live in ``conftest.py``."""

from __future__ import annotations

import contextlib
import json
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests


def control(server, what: str, body: dict, timeout: float = 60) -> dict:
    """POST ``body`` to the replay's ``/_replay/<what>`` (config, faults, reset); its JSON answer."""
    response = requests.post(f"{server.url}/_replay/{what}", json=body, timeout=timeout)
    assert response.status_code == 200, response.text
    return response.json()


def requests_seen(server, detail: bool = False) -> list:
    """The data requests the replay has answered since its last reset (``detail``: as dicts)."""
    return requests.get(f"{server.url}/_replay/requests", params={"detail": 1} if detail else {}, timeout=30).json()


def replay_connection(server, **fields) -> str:
    """The JSON of an HTTP connection to ``server`` (what ``AIRFLOW_CONN_<ID>`` holds); ``fields``
    add to it or replace its defaults (``extra``, ``password``, ``port``)."""
    host, port = server.url.split("://", 1)[1].split(":")
    return json.dumps({"conn_type": "http", "host": host, "port": int(port), "schema": "http", **fields})


def connection_env(server, *conn_ids: str, **fields) -> dict[str, str]:
    """``AIRFLOW_CONN_<ID>`` for each of ``conn_ids``, all pointed at ``server``."""
    return {f"AIRFLOW_CONN_{conn_id.upper()}": replay_connection(server, **fields) for conn_id in conn_ids}


def fresh_folder(folder: Path) -> Path:
    """``folder``, emptied: a module's own lake and warehouse start from nothing on every run."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return folder


@contextlib.contextmanager
def replay_environment(
    lake: Path,
    warehouse: Path,
    connections: Callable[[object], dict[str, str]] | None = None,
    configure: Callable[[object], None] | None = None,
    **env: str,
) -> Iterator:
    """A started replay server (``configure``\\ d first), with ``CIVIC_LAKE``, ``CIVIC_WAREHOUSE``,
    the ``connections(server)`` variables and ``env`` set for as long as the context lasts; yields
    the server, stopped at the end."""
    with _environment(lake, warehouse, connections, configure, env) as (server, _):
        yield server


@contextlib.contextmanager
def module_environment(data: Path, **kwargs) -> Iterator[dict]:
    """``replay_environment`` with its lake (``lake/``) and warehouse (``warehouse.duckdb``) in
    ``data``, as the end-to-end modules share it: yields ``{"server", "data", "patch"}``, ``patch``
    the environment's MonkeyPatch (for what a module sets once the server runs)."""
    configure, connections = kwargs.pop("configure", None), kwargs.pop("connections", None)
    with _environment(data / "lake", data / "warehouse.duckdb", connections, configure, kwargs) as (server, patch):
        yield {"server": server, "data": data, "patch": patch}


@contextlib.contextmanager
def _environment(lake: Path, warehouse: Path, connections, configure, env: dict) -> Iterator[tuple]:
    from civic_pipelines.replay.server import make_server

    server = make_server(host="127.0.0.1", port=0)
    server.start()
    try:
        if configure:
            configure(server)
        with pytest.MonkeyPatch.context() as patch:
            variables = {
                "CIVIC_LAKE": str(lake),
                "CIVIC_WAREHOUSE": str(warehouse),
                **(connections(server) if connections else {}),
                **env,
            }
            for key, value in variables.items():
                patch.setenv(key, value)
            yield server, patch
    finally:
        server.stop()


CITIES_311 = ("civic_minneapolis_311", "civic_toronto_311", "civic_nyc_311")


def cities_311(server) -> dict[str, str]:
    """The three 311 cities' connections, all on ``server``."""
    return connection_env(server, *CITIES_311)


def street_works(events_per_month: dict[str, int], activities_per_month: int, today: str) -> dict:
    """``replay_environment``'s arguments for the street-works sources: Street Manager's archives
    (published to June 2024, ``events_per_month`` per part) and SRWR's exports (as of ``today``,
    ``activities_per_month``), each with its connection (SRWR's names its ``today`` too)."""

    def configure(server) -> None:
        server.street_manager.configure({"latest_month": "2024-06", "events_per_month": events_per_month})
        server.srwr.set_today(today)
        server.srwr.set_activities_per_month(activities_per_month)

    def connections(server) -> dict[str, str]:
        return {
            **connection_env(server, "civic_street_manager"),
            **connection_env(server, "civic_srwr", extra={"today": today}),
        }

    return {"configure": configure, "connections": connections}
