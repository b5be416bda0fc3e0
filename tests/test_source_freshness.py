"""dbt source freshness (issue 14, item 8): the DAGs' ``source_freshness`` task runs dbt's own
``source freshness`` on a source's lake tables, and the dashboard's health card shows each table's
status (pass / warn / error / runtime error) with the age of its newest landing.

Real dbt on small lakes whose only column that matters is ``_landed_at``: Seattle landed 50 days ago
(past warn_after, 45 days), Toronto 100 days ago (past error_after, 90 days), Minneapolis an hour
ago, NYC never (no block: dbt cannot read the table). The Seattle DAG run that ends in a pass is in
test_seattle_dag_e2e.py.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

AGES = {"seattle_crime": timedelta(days=50), "toronto_311": timedelta(days=100), "minneapolis_311": timedelta(hours=1)}
WANT = {
    "seattle_crime": ("warn", "50 days"),
    "toronto_311": ("error", "100 days"),
    "minneapolis_311": ("pass", "1 hour"),
    "nyc_311": ("runtime error", None),
}  # no block landed: dbt cannot read the table


@pytest.fixture(scope="module")
def freshness(tmp_path_factory):
    from civic_pipelines.orchestration.dbt_group import run_source_freshness

    root = tmp_path_factory.mktemp("freshness")
    now = datetime.now(UTC)
    for source, age in AGES.items():
        folder = root / "lake" / source / "month=2024-01"
        folder.mkdir(parents=True)
        landed = pa.array([now - age - timedelta(hours=2), now - age], pa.timestamp("us", tz="UTC"))
        pq.write_table(pa.table({"_landed_at": landed}), folder / "data.parquet")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CIVIC_LAKE", str(root / "lake"))
        patch.setenv("CIVIC_WAREHOUSE", str(root / "warehouse.duckdb"))
        patch.setenv("CIVIC_DBT_FRESHNESS", str(root / "freshness"))
        statuses = {source: run_source_freshness(source) for source in WANT}
        yield {"root": root, "statuses": statuses}


def test_dbt_source_freshness_grades_each_lake_table(freshness):
    statuses = freshness["statuses"]
    assert statuses["seattle_crime"] == {"offenses": "warn"}
    assert statuses["toronto_311"] == {"requests": "error"}
    assert statuses["minneapolis_311"] == {"requests": "pass"}
    assert statuses["nyc_311"] == {"requests": "runtime error"}
    kept = json.loads((freshness["root"] / "freshness" / "seattle_crime.json").read_text())
    (offenses,) = kept["results"]
    assert offenses["warn_after"] == "45 days" and offenses["error_after"] == "90 days"
    assert 50 * 86400 <= offenses["age_seconds"] < 50 * 86400 + 600
    nyc = json.loads((freshness["root"] / "freshness" / "nyc_311.json").read_text())["results"][0]
    assert "No files found" in nyc["message"] and str(freshness["root"]) not in nyc["message"], nyc["message"]


def test_the_health_card_shows_status_and_age(airflow_db, freshness, reliability):
    reliability.row(
        fault="stale source (no landing for 50 / 100 days, or none)",
        source="seattle_crime, toronto_311, nyc_311",
        expected="dbt source freshness grades each lake table warn / error / runtime error and the "
        "health card shows the status and the age of the newest landing",
    )
    import dashboard_warehouse as dw

    root = freshness["root"]
    with dw.client_without_build(
        root, dbt_freshness=root / "freshness"
    ) as client:  # a viewer, as the Airflow UI's cookie says
        cards = dw.overview_cards(client)
        html = client.get("/civic/").text
    for source, (status, age) in WANT.items():
        card = cards[source]
        assert card["dbt_freshness_status"] == status, card
        (table,) = card["dbt_freshness"]
        assert table["status"] == status and table["age"] == age, table
        section = re.search(
            rf'data-source-card="{source}".*?data-field="source_freshness"[^>]*>(.*?)</div>', html, re.S
        ).group(1)
        assert "dbt source freshness: <b class=" in section and f">{status}</b>" in section, section
        if age:
            assert f"newest landing {age} ago" in section, section
        assert "No files found" not in section and str(root) not in section, "a viewer sees no raw error or path"
    reliability.observed(
        "cards: seattle_crime warn 50 days, toronto_311 error 100 days, minneapolis_311 pass 1 hour, "
        "nyc_311 runtime error (no block)"
    )
    assert cards["street_manager"]["dbt_freshness_status"] == "not run"
    assert "dbt source freshness: not run yet" in re.search(
        r'data-source-card="street_manager".*?data-field="source_freshness"[^>]*>(.*?)</div>', html, re.S
    ).group(1)


def test_human_age():
    from civic_pipelines.dashboard.health import human_age

    assert human_age(4320081) == "50 days"
    assert human_age(5400) == "1.5 hours"
    assert human_age(3600) == "1 hour"
    assert human_age(42) == "42 seconds"
    assert human_age(None) is None
