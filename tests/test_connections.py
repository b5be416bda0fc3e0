"""Connections are read as Airflow reads them: our parser (used where there is no Airflow, in the
extractor container) against Airflow's own ``Connection`` and the http provider's ``HttpHook``.

For every source's connection id and every form a person or Airflow writes (URI and JSON, with and
without ``schema``, a host with a path, a host with its own protocol, and each one's round trip
through ``Connection(...).get_uri()``), the base URL, login, password and extras we read equal what
``HttpHook(http_conn_id=...).get_conn()`` reads from the same ``AIRFLOW_CONN_*`` variable.
"""

import json

import pytest

from civic_pipelines import sources
from civic_pipelines.connections import parse_connection, resolve


def test_json_form_with_scheme_in_schema_and_token_as_password():
    conn = parse_connection(
        "civic_x",
        json.dumps({"conn_type": "http", "host": "127.0.0.1", "port": 8765, "schema": "http", "password": "s3cret"}),
    )
    assert conn.base_url == "http://127.0.0.1:8765"
    assert conn.password == "s3cret"
    assert "s3cret" not in repr(conn)


def test_uri_form_without_schema_is_http_as_in_httphook_and_unquotes_the_password():
    conn = parse_connection("civic_x", "http://:tok%2Fen@data.seattle.gov")
    assert conn.base_url == "http://data.seattle.gov"
    assert conn.password == "tok/en"


def test_uri_form_with_extra_and_scheme():
    conn = parse_connection("civic_x", "http://user:pw@localhost:9000/http?__extra__=%7B%22a%22%3A+1%7D")
    assert conn.base_url == "http://localhost:9000"
    assert conn.extra == {"a": 1}
    assert conn.login == "user"


def test_no_connection_means_the_live_default(monkeypatch):
    monkeypatch.delenv("AIRFLOW_CONN_CIVIC_NOWHERE", raising=False)
    monkeypatch.setenv("CIVIC_NO_AIRFLOW_LOOKUP", "1")
    assert resolve("civic_nowhere", "https://data.seattle.gov").base_url == "https://data.seattle.gov"


def test_environment_variable_wins(monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_CIVIC_SEATTLE_CRIME", "http://127.0.0.1:1234/http")
    assert resolve("civic_seattle_crime", "https://data.seattle.gov").base_url == "http://127.0.0.1:1234"


def test_lookup_says_when_there_is_no_connection(monkeypatch):
    from civic_pipelines.connections import lookup

    monkeypatch.delenv("AIRFLOW_CONN_CIVIC_LAKE_S3", raising=False)
    monkeypatch.setenv("CIVIC_NO_AIRFLOW_LOOKUP", "1")
    assert lookup("civic_lake_s3") is None
    monkeypatch.setenv(
        "AIRFLOW_CONN_CIVIC_LAKE_S3",
        json.dumps(
            {"conn_type": "aws", "login": "AKIAFAKE", "password": "fake-secret", "extra": {"region_name": "eu-west-2"}}
        ),
    )
    found = lookup("civic_lake_s3")
    assert (found.login, found.password, found.extra) == ("AKIAFAKE", "fake-secret", {"region_name": "eu-west-2"})
    assert "fake-secret" not in repr(found)


# ---------------------------------------------------------------- against Airflow's own reading


def every_connection() -> list[tuple[str, str]]:
    """(conn_id, default base URL) of every source, one per MDS provider."""
    found = []
    for spec in sources.specs():
        if spec.name == "mds":
            from civic_pipelines.sources.mds import provider_conn_id

            found += [(provider_conn_id(provider), "") for provider in sources.parts("mds")]
        else:
            found.append((spec.conn_id, spec.default_base_url))
    return found


def forms() -> dict[str, str]:
    """Each form of a connection value, as people and Airflow write them."""
    from airflow.sdk import Connection

    extra = {"mds_version": "1.2.0", "auth": "bearer"}
    return {
        "uri, no schema": "http://127.0.0.1:8765",
        "uri, schema https": "http://:fake%2Ftoken@api.example.org:8443/https",
        "uri, schema http, extras": "http://user:pw@localhost:9000/http?__extra__=%7B%22a%22%3A+1%7D",
        "json, no schema": json.dumps({"conn_type": "http", "host": "127.0.0.1", "port": 8765}),
        "json, schema http": json.dumps({"conn_type": "http", "host": "127.0.0.1", "port": 8765, "schema": "http"}),
        "json, host with a path": json.dumps(
            {
                "conn_type": "http",
                "host": "api.example.org/v1/mds",
                "schema": "https",
                "password": "fake-token",
                "extra": extra,
            }
        ),
        "json, host with protocol": json.dumps(
            {
                "conn_type": "http",
                "host": "https://api.example.org/v1/mds",
                "password": "fake-token",
                "extra": json.dumps(extra),
            }
        ),
        # Connection.get_uri() percent-encodes the host's path: api.example.org%2Fv1%2Fmds.
        "get_uri, host with a path": Connection(
            conn_id="x",
            conn_type="http",
            host="api.example.org/v1/mds",
            schema="https",
            password="fake-token",
            extra=json.dumps(extra),
        ).get_uri(),
        "get_uri, host with protocol": Connection(
            conn_id="x", conn_type="http", host="http://127.0.0.1:8765/mds/voi"
        ).get_uri(),
        "get_uri, no schema": Connection(
            conn_id="x", conn_type="http", host="data.example.org", login="me", password="p@ss:word/"
        ).get_uri(),
    }


def airflow_reading(conn_id: str) -> dict:
    """What Airflow reads from the environment: the http provider's base URL and the fields."""
    from airflow.providers.http.hooks.http import HttpHook
    from airflow.sdk import BaseHook

    hook = HttpHook(method="GET", http_conn_id=conn_id)
    hook.get_conn().close()
    conn = BaseHook.get_connection(conn_id)
    return {
        "base_url": hook.base_url.rstrip("/"),
        "login": conn.login,
        "password": conn.password,
        "extra": conn.extra_dejson,
    }


def our_reading(conn_id: str, default: str) -> dict:
    conn = resolve(conn_id, default)
    return {"base_url": conn.base_url, "login": conn.login, "password": conn.password, "extra": conn.extra}


FORM_NAMES = list(forms())


@pytest.mark.parametrize("form", FORM_NAMES)
@pytest.mark.parametrize("conn_id,default", every_connection())
def test_every_source_reads_every_form_as_airflow_does(conn_id, default, form, monkeypatch):
    from airflow.sdk import Connection

    value = forms()[form]
    monkeypatch.setenv("CIVIC_NO_AIRFLOW_LOOKUP", "1")  # ours: the variable alone
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", value)
    ours, theirs = our_reading(conn_id, default), airflow_reading(conn_id)
    assert ours == theirs, form
    assert ours["base_url"].startswith(("http://", "https://")) and "%2" not in ours["base_url"]
    # The round trip: what Airflow writes back for the connection it read is read the same again.
    parsed = (
        Connection.from_json(value, conn_id=conn_id)
        if value.startswith("{")
        else Connection.from_uri(value, conn_id=conn_id)
    )
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", parsed.get_uri())
    again = our_reading(conn_id, default)
    assert again == airflow_reading(conn_id), parsed.get_uri()
    # get_uri() writes an absent login as ":password@", which reads back as "" (Airflow's own asymmetry)
    assert {**again, "login": again["login"] or None} == {**theirs, "login": theirs["login"] or None}


def test_the_forms_of_the_issue_read_as_http_and_decoded():
    """The two reports: an http URI without schema became https (an SSL error against the replay),
    and a host written by get_uri() (``api.voiapp.io%2Fv1%2F...``) stayed encoded."""
    assert parse_connection("civic_seattle_crime", "http://127.0.0.1:8765").base_url == "http://127.0.0.1:8765"
    assert (
        parse_connection(
            "civic_seattle_crime", json.dumps({"conn_type": "http", "host": "127.0.0.1", "port": 8765})
        ).base_url
        == "http://127.0.0.1:8765"
    )
    assert (
        parse_connection("civic_mds_voi", "http://:tok@api.voiapp.io%2Fv1%2Fmds/https").base_url
        == "https://api.voiapp.io/v1/mds"
    )
