"""The lake on S3: real blocks land with run_block in s3://bucket/lake on an S3 endpoint on loopback
(moto's server mode), with the credentials and endpoint of the Airflow connection ``civic_lake_s3``
(type ``aws``); a re-run skips, a forced re-run replaces each block whole (no duplicates, no
staged objects left), and the blocks read back with pyarrow (and DuckDB over the Arrow dataset).

dbt is not run over the S3 lake here: DuckDB reads s3:// only through its httpfs extension, which
is not bundled with DuckDB 2.0.0 and would be downloaded at run time (no network here; the PyPI
packages of DuckDB extensions are built for 1.4). The read-back goes through pyarrow, the same
filesystem the lake writer uses.
"""

from __future__ import annotations

import json
import logging
import socket

import pyarrow.dataset as ds
import pytest
from replay_env import replay_connection

from civic_pipelines import lake as lake_module
from civic_pipelines.extract import run_block
from civic_pipelines.lake import BlockLocation, landed_months, read_block_table, read_manifest
from civic_pipelines.replay.street_manager import archive_events

BUCKET = "civic-lake"
LAKE = f"s3://{BUCKET}/lake"
MONTHS = ["2024-02", "2024-03"]
# Obviously fake credentials: moto accepts any; the test checks they are the ones sent.
ACCESS_KEY = "AKIAFAKECIVICLAKE000"
SECRET_KEY = "fake-secret-for-the-moto-server-only"


@pytest.fixture(scope="module")
def moto_endpoint():
    """moto's S3 server on a free loopback port, once per module (importing moto's server takes seconds)."""
    from moto.server import ThreadedMotoServer

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture
def s3_lake(moto_endpoint, monkeypatch, tmp_path):
    """An empty store with one bucket, and the lake's connection (``civic_lake_s3``) pointing at it."""
    import boto3
    import requests
    from moto.moto_api import recorder

    endpoint = moto_endpoint
    # moto's request recorder writes ./moto_recording by default: keep it in the test's folder.
    monkeypatch.setattr(recorder, "_location", str(tmp_path / "moto_recording"))
    # moto keeps its buckets in the process: every test starts from an empty store.
    requests.post(f"{endpoint}/moto-api/reset", timeout=10).raise_for_status()
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CIVIC_NO_AIRFLOW_LOOKUP", "1")
    monkeypatch.setenv(
        "AIRFLOW_CONN_CIVIC_LAKE_S3",
        json.dumps(
            {
                "conn_type": "aws",
                "login": ACCESS_KEY,
                "password": SECRET_KEY,
                "extra": {"endpoint_url": endpoint, "region_name": "eu-west-2"},
            }
        ),
    )
    client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        region_name="eu-west-2",
    )
    client.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": "eu-west-2"})
    return {"endpoint": endpoint, "client": client}


def objects(client, prefix: str = "lake/") -> list[str]:
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
    return sorted(item["Key"] for page in pages for item in page.get("Contents", []))


def recorded_access_keys(endpoint: str) -> set[str]:
    """The access key ids in the Authorization headers moto's recorder saw (SigV4's Credential=)."""
    import requests

    lines = requests.get(f"{endpoint}/moto-api/recorder/download-recording", timeout=10).text.splitlines()
    keys = set()
    for line in lines:
        if not line.strip():
            continue
        headers = json.loads(line).get("headers") or {}
        authorization = headers.get("Authorization") or headers.get("authorization") or ""
        if "Credential=" in authorization:
            keys.add(authorization.split("Credential=", 1)[1].split("/", 1)[0])
    return keys


def test_blocks_land_on_s3_with_the_connection_rerun_without_duplicates_and_read_back(
    s3_lake, seattle_conn, monkeypatch, caplog, capsys
):
    import requests

    replay = seattle_conn
    replay.dataset.set_rows_per_month(300)
    endpoint, client = s3_lake["endpoint"], s3_lake["client"]
    filesystem, root = lake_module._filesystem(LAKE)
    assert filesystem.type_name == "s3" and root == f"{BUCKET}/lake"
    requests.post(f"{endpoint}/moto-api/recorder/start-recording", timeout=10).raise_for_status()
    caplog.set_level(logging.DEBUG)

    want = {month: {int(row["offense_id"]) for row in replay.dataset.rows_for_month(month)} for month in MONTHS}
    first = {month: run_block("seattle_crime", month, lake=LAKE) for month in MONTHS}
    for month, manifest in first.items():
        assert not manifest["skipped"] and manifest["rows"] == len(want[month]) > 200
        assert manifest["path"] == f"{LAKE}/seattle_crime/month={month}/data.parquet"
    expected_objects = sorted(
        f"lake/seattle_crime/month={month}/{name}" for month in MONTHS for name in ("_manifest.json", "data.parquet")
    )
    # pyarrow may leave directory markers ("lake/seattle_crime/month=.../"); never a staged ".tmp" object.
    assert [key for key in objects(client) if not key.endswith("/")] == expected_objects
    assert landed_months(LAKE, "seattle_crime") == MONTHS

    # Unchanged source: the re-run skips on the watermark read back from the S3 manifest.
    again = [run_block("seattle_crime", month, lake=LAKE) for month in MONTHS]
    assert [m["skipped"] for m in again] == [True, True]
    assert all("unchanged" in m["reason"] for m in again)
    # Forced: each block is replaced whole, the same rows once, and the manifest is the new one.
    forced = {month: run_block("seattle_crime", month, lake=LAKE, force=True) for month in MONTHS}
    for month, manifest in forced.items():
        assert not manifest["skipped"] and manifest["sha256"] == first[month]["sha256"]
        assert manifest["rows_changed"] == {"added": 0, "removed": 0, "changed": 0}
        assert read_manifest(BlockLocation(LAKE, "seattle_crime", month))["landed_at"] == manifest["landed_at"]
    assert [key for key in objects(client) if not key.endswith("/")] == expected_objects

    # Read back: per block, and the whole source as one dataset (what a reader's glob sees).
    for month in MONTHS:
        keys = read_block_table(BlockLocation(LAKE, "seattle_crime", month))["offense_id"].to_pylist()
        assert len(keys) == len(set(keys)) == len(want[month]) and set(keys) == want[month]
    dataset = ds.dataset(
        f"{root}/seattle_crime",
        filesystem=filesystem,
        format="parquet",
        partitioning="hive",
        exclude_invalid_files=False,
    )
    assert sorted(f.rsplit("/", 2)[-2] for f in dataset.files) == [f"month={m}" for m in MONTHS]
    import duckdb

    with duckdb.connect() as con:
        con.register("lake_rows", dataset)
        total, distinct, per_month = con.execute(
            "select count(*), count(distinct offense_id), list(distinct month order by month) from lake_rows"
        ).fetchone()
    assert total == distinct == sum(len(v) for v in want.values())
    assert per_month == MONTHS

    # The credentials were the connection's (every signed request carried its access key id), and the
    # secret key appeared nowhere: logs, printed output, manifests.
    assert recorded_access_keys(endpoint) == {ACCESS_KEY}
    requests.post(f"{endpoint}/moto-api/recorder/stop-recording", timeout=10).raise_for_status()
    printed = capsys.readouterr()
    everything = caplog.text + printed.out + printed.err + json.dumps([first, again, forced], default=str)
    assert SECRET_KEY not in everything
    assert SECRET_KEY not in repr(filesystem)


def test_a_streamed_block_and_one_with_extra_tables_land_whole_on_s3(s3_lake, replay, monkeypatch):
    """Street Manager (BlockWriter, batch by batch) and SRWR (several parquet files per block)."""
    monkeypatch.setenv("AIRFLOW_CONN_CIVIC_STREET_MANAGER", replay_connection(replay))
    monkeypatch.setenv("AIRFLOW_CONN_CIVIC_SRWR", replay_connection(replay, extra={"today": "2026-11-23"}))
    replay.street_manager.configure({"latest_month": "2024-06", "events_per_month": {"permit": 120}})
    replay.srwr.set_today("2026-11-23")
    replay.srwr.set_activities_per_month(30)
    client = s3_lake["client"]
    month = MONTHS[0]

    events = [e["event_reference"] for e in archive_events(replay.street_manager.spec("permit", month))]
    for force in (False, True):
        manifest = run_block("street_manager", month, lake=LAKE, part="permit", force=force)
        assert not manifest["skipped"] and manifest["rows"] == len(events) == 120
        keys = read_block_table(BlockLocation(LAKE, "street_manager", month, "permit"))["event_reference"].to_pylist()
        assert sorted(keys) == sorted(events)
    assert [k for k in objects(client, "lake/street_manager/") if not k.endswith("/")] == [
        f"lake/street_manager/permit/month={month}/_manifest.json",
        f"lake/street_manager/permit/month={month}/data.parquet",
    ]

    for force in (False, True):
        manifest = run_block("srwr", month, lake=LAKE, force=force)
        assert not manifest["skipped"] and manifest["rows"] > 0
    location = BlockLocation(LAKE, "srwr", month)
    activities = read_block_table(location)["activity_id"].to_pylist()
    assert len(activities) == len(set(activities)) == manifest["rows"]
    landed = [k.rsplit("/", 1)[1] for k in objects(client, "lake/srwr/") if not k.endswith("/")]
    assert set(landed) == {"_manifest.json", "data.parquet", *(f"{name}.parquet" for name in manifest["tables"])}
    for name, rows in manifest["tables"].items():
        assert read_block_table(location, f"{name}.parquet").num_rows == rows
