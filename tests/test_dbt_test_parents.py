"""Each Cosmos task builds one dbt node with `dbt build --select <node>`, and dbt's eager indirect
selection adds every test with that node among its parents. A test with two parents would run with
the first one built, before the other exists (a relationships test from the 311 fact to the category
seed failed the seed's task in every 311 DAG): every data test has a single parent."""

from __future__ import annotations

import json
from pathlib import Path

MANIFEST = Path(__file__).resolve().parents[1] / "dbt" / "target" / "manifest.json"


def test_every_data_test_has_one_parent_node():
    nodes = json.loads(MANIFEST.read_text())["nodes"]
    tests = {key: node for key, node in nodes.items() if node["resource_type"] == "test"}
    assert len(tests) > 100  # the project's tests are in the manifest
    several = {
        key: sorted({p for p in node["depends_on"]["nodes"] if p.split(".")[0] in ("model", "seed", "snapshot")})
        for key, node in tests.items()
    }
    assert {key: parents for key, parents in several.items() if len(parents) > 1} == {}
    assert any(
        node["test_metadata"].get("name") == "service_request_city"
        for node in tests.values()
        if node.get("test_metadata")
    )
