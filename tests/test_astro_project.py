"""The Astro project's files say one consistent thing (no containers: a second).

* The Dockerfile's Runtime tag is the one place that says which Airflow: the development lock
  pins apache-airflow on that tag's line, and the stand-in Runtime takes its version from both.
* requirements.txt is only what the image adds on top of the Runtime: no Airflow core, no test,
  browser or benchmark tool, and every line of it is satisfied by the development lock (so the
  image and the tests run the same versions).
* .astro/config.yaml names the project as `astro dev init` writes it; packages.txt exists (the
  Runtime's ONBUILD copies it).
* The image parses the dbt manifest itself, and nothing hides it: .dockerignore drops the host's
  dbt/target and the override mounts no dbt/ over it.
* airflow_settings.yaml points at nothing that does not exist: no placeholder host, no
  civic_postgres or MDS connection, every connection a public host of the source's contract.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import yaml
from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

import astro_local  # noqa: E402


def lock_pins() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "requirements-dev.txt").read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9_.\-\[\]]+)==(\S+)", line)
        if match:
            pins[re.sub(r"\[.*\]", "", match.group(1)).lower().replace("_", "-")] = match.group(2)
    return pins


def image_requirements() -> list[Requirement]:
    lines = [line.split("#")[0].strip() for line in (ROOT / "requirements.txt").read_text().splitlines()]
    return [Requirement(line) for line in lines if line]


def test_the_lock_pins_airflow_on_the_runtime_tags_line():
    tag = astro_local.runtime_tag()
    assert re.fullmatch(r"\d+\.\d+-\d+(-python-3\.11)?", tag), tag
    assert tag.endswith("-python-3.11"), "the lock is compiled for Python 3.11: use the Runtime's -python-3.11 flavour"
    airflow = lock_pins()["apache-airflow"]
    assert airflow == astro_local.locked_airflow()
    assert Version(airflow).release[:2] == tuple(int(part) for part in astro_local.airflow_line(tag).split("."))
    # `make lock` holds Airflow to the tag's line, read from the Dockerfile (the one place).
    makefile = (ROOT / "Makefile").read_text()
    assert "RUNTIME_TAG := $(shell sed" in makefile and "apache-airflow==$(RUNTIME_AIRFLOW).*" in makefile
    assert "-r requirements-dev.txt" in makefile and "requirements.txt pyproject.toml" not in makefile


def test_requirements_txt_is_what_the_image_adds_and_the_lock_satisfies_it():
    requirements = image_requirements()
    names = {requirement.name.lower() for requirement in requirements}
    assert "apache-airflow" not in names and "apache-airflow-core" not in names
    # Not for the image: tests, browser checks, benchmarks, the local stack's tools.
    assert not names & {"pytest", "pytest-timeout", "pytest-xdist", "playwright", "moto", "dlt", "podman-compose"}
    # The providers the Runtime ships need no line (standard, common-sql, ...).
    assert "apache-airflow-providers-standard" not in names
    assert {"apache-airflow-providers-docker", "astronomer-cosmos", "dbt-duckdb", "duckdb"} <= names
    pins = lock_pins()
    for requirement in requirements:
        locked = pins.get(requirement.name.lower())
        assert locked, f"{requirement.name} is not in the development lock"
        assert requirement.specifier.contains(locked, prereleases=True), f"{requirement} vs lock {locked}"
    # And the dev inputs include the image's list, so `make lock` cannot drift from it.
    assert "-r requirements.txt" in (ROOT / "requirements-dev.in").read_text().splitlines()


def test_astro_project_files():
    config = yaml.safe_load((ROOT / ".astro" / "config.yaml").read_text())
    assert config == {"project": {"name": "civic-pipelines"}}
    assert astro_local.project_name().startswith("civic-pipelines_")
    packages = [line.split("#")[0].strip() for line in (ROOT / "packages.txt").read_text().splitlines()]
    assert not any(packages), "the image needs no system package (every wheel bundles its libraries)"


def test_the_image_parses_the_manifest_and_nothing_hides_it():
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "dbt parse" in dockerfile and "test -s target/manifest.json" in dockerfile
    override = yaml.safe_load((ROOT / "docker-compose.override.yml").read_text())
    for service, spec in override["services"].items():
        for volume in spec.get("volumes", []):
            assert "/usr/local/airflow/dbt" not in volume, f"{service} mounts {volume} over the image's manifest"


def test_airflow_settings_point_at_nothing_missing():
    settings = yaml.safe_load((ROOT / "airflow_settings.yaml").read_text())["airflow"]
    conn_ids = {conn["conn_id"] for conn in settings["connections"]}
    assert "civic_postgres" not in conn_ids
    assert not any(conn_id.startswith("civic_mds") for conn_id in conn_ids)
    for conn in settings["connections"]:
        assert "ZONE_ID" not in str(conn) and "<" not in str(conn.get("conn_host"))
        assert conn["conn_schema"] == "https" and "." in conn["conn_host"]
    variables = {variable["variable_name"]: variable["variable_value"] for variable in settings["variables"]}
    assert "civic_mds_providers" not in variables
    assert variables["civic_extract_mode"] == "local"


def test_airflow_settings_survive_the_clis_quoting():
    """The Astro CLI runs each setting as `airflow ... '<value>'` under `bash -c`: a single quote
    in a value breaks the command (seen: a pool description with "year's" failed to load)."""
    settings = yaml.safe_load((ROOT / "airflow_settings.yaml").read_text())["airflow"]
    for section in ("connections", "pools", "variables"):
        for entry in settings.get(section) or []:
            for key, value in entry.items():
                assert "'" not in str(value), f"{section}: {key}={value!r}"
