import json

from civic_pipelines.connections import parse_connection, resolve


def test_json_form_with_scheme_in_schema_and_token_as_password():
    conn = parse_connection("civic_x", json.dumps({"conn_type": "http", "host": "127.0.0.1", "port": 8765, "schema": "http", "password": "s3cret"}))
    assert conn.base_url == "http://127.0.0.1:8765"
    assert conn.password == "s3cret"
    assert "s3cret" not in repr(conn)


def test_uri_form_defaults_to_https_and_unquotes_the_password():
    conn = parse_connection("civic_x", "http://:tok%2Fen@data.seattle.gov")
    assert conn.base_url == "https://data.seattle.gov"
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
    monkeypatch.setenv("AIRFLOW_CONN_CIVIC_LAKE_S3", json.dumps(
        {"conn_type": "aws", "login": "AKIAFAKE", "password": "fake-secret", "extra": {"region_name": "eu-west-2"}}))
    found = lookup("civic_lake_s3")
    assert (found.login, found.password, found.extra) == ("AKIAFAKE", "fake-secret", {"region_name": "eu-west-2"})
    assert "fake-secret" not in repr(found)
