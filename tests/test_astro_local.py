"""`make astro-local`, run by the suite: the stack `astro dev start` runs, run here on stand-ins.

``scripts/astro_local.py`` builds (or takes from podman's cache under ~/.cache/civic-pipelines)
the Runtime and postgres stand-ins and the project's own Dockerfile on them, renders the Astro
CLI's Airflow 3 compose project merged with docker-compose.override.yml, starts it with
podman-compose, imports airflow_settings.yaml as the CLI does, and triggers seattle_crime and
street_manager (permits) for two months each through the REST API in docker extract mode. Here
every outcome is asserted: both runs succeed, each block ran in its own extractor container (the
engine's event log), the lake holds exactly what the same blocks land in-process from the same
replay, the warehouse's staging models hold those rows, the dag-processor reports no import
error, and the dashboard answers at /civic/ inside the api-server container. The figures (build
seconds fresh or cached, stack start, per-block times) are printed at the end.

It has an xdist group of its own ("astro_local"), the suite's longest, started first: it can run
beside the docker-mode tests, which start containers from the same extractor image, because the
stack is given that image under the project's own name and only those containers are counted.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

import astro_local  # noqa: E402

BLOCKS = sum(len(months) for months in astro_local.SOURCES.values())


@pytest.mark.xdist_group("astro_local")
@pytest.mark.timeout(3600)
def test_astro_local_stack_lands_both_sources_through_extractor_containers(tmp_path_factory, capsys):
    result = astro_local.run(tmp_path_factory.mktemp("astro"))

    assert {dag_id: run["state"] for dag_id, run in result.runs.items()} == {
        dag_id: "success" for dag_id in astro_local.SOURCES
    }
    extracts = [ti for run in result.runs.values() for ti in run["task_instances"] if ti["task_id"] == "extract_load"]
    assert len(extracts) == BLOCKS and {ti["state"] for ti in extracts} == {"success"}
    assert {ti["operator"] for ti in extracts} == {"CivicExtractDockerOperator"}

    # One extractor container per block, started by the scheduler's DockerOperator through the
    # socket: the triggered runs' blocks plus those of the one scheduled (catchup) run per DAG.
    ran = [
        ti
        for run in result.runs.values()
        for ti in run["all_task_instances"]
        if ti["task_id"] == "extract_load" and ti["state"] in ("success", "skipped")
    ]
    assert all(state == "success" for run in result.runs.values() for state in run["all_runs"].values())
    assert len(result.containers) == len(ran) >= BLOCKS, (result.containers, ran)

    # The lake equals the in-process landing from the same replay (checked block by block in
    # compare_lakes: data sha256, rows, quarantine, watermark), and the warehouse's staging holds it.
    assert set(result.lake_rows) == set(astro_local.SOURCES) and all(rows > 0 for rows in result.lake_rows.values())
    # Staging holds exactly the lake's rows: every Seattle block, and the permits (150 a month in
    # the replay) but no activity or section 58 event (only the permit part is enabled).
    assert result.warehouse["stg_seattle_crime__offenses"] == result.lake_rows["seattle_crime"], result.warehouse
    # (a catchup run that started before the start-month Variable was re-parsed may add a block.)
    assert result.warehouse["stg_street_manager__permit_events"] == result.lake_rows["street_manager"], result.warehouse
    assert result.lake_rows["street_manager"] % astro_local.STREET_MANAGER_EVENTS["permit"] == 0
    assert result.warehouse["stg_street_manager__activity_events"] == 0
    assert result.warehouse["stg_street_manager__section_58_events"] == 0

    assert result.import_errors == 0
    assert result.figures["dags"] >= len(astro_local.SOURCES)
    status, body = result.dashboard
    assert status == 200 and "<html" in body.lower()

    # Settings imported as the CLI does: every pool and variable, the sources' connections.
    assert "duckdb_writer" in result.settings["pools"] and "civic_extract_mode" in result.settings["variables"]
    assert {"civic_seattle_crime", "civic_street_manager"} <= set(result.settings["connections"])

    with capsys.disabled():
        print(
            "\n[astro-local] "
            + json.dumps(
                {**result.figures, "lake_rows": result.lake_rows, "warehouse": result.warehouse},
                default=lambda value: str(value),
                indent=1,
            ).replace("\n", "\n[astro-local] ")
        )
