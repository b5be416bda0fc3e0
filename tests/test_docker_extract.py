"""The docker extract path, rendered for one block: image, command, environment and mounts,
with the connection handed over only through the non-rendered private environment."""

from __future__ import annotations

import json

import pytest

SECRET = "app-token-do-not-print-7f3a"


@pytest.fixture
def docker_dag(monkeypatch):
    from civic_pipelines.orchestration.dag_factory import build_source_dag

    monkeypatch.setenv("AIRFLOW_VAR_CIVIC_EXTRACTOR_IMAGE", "civic-extractor:test")
    monkeypatch.setenv("AIRFLOW_VAR_CIVIC_DOCKER_URL", "unix:///tmp/podman.sock")
    monkeypatch.setenv(
        "AIRFLOW_CONN_CIVIC_SEATTLE_CRIME",
        json.dumps({"conn_type": "http", "host": "data.seattle.gov", "schema": "https", "password": SECRET}),
    )
    return build_source_dag("seattle_crime", extract_mode="docker")


def test_rendered_operator_for_a_block(docker_dag, monkeypatch):
    from airflow.providers.docker.operators.docker import DockerOperator

    from civic_pipelines import settings
    from civic_pipelines.orchestration.docker_extract import CivicExtractDockerOperator

    mapped = docker_dag.get_task("extract_load")
    assert mapped.operator_class is CivicExtractDockerOperator or mapped.operator_class.__name__ == "CivicExtractDockerOperator"
    block = {"source": "seattle_crime", "month": "2024-02", "force": True, "label": "seattle_crime 2024-02"}
    kwargs = {k: v for k, v in mapped.partial_kwargs.items() if k not in ("task_id",)}
    operator = CivicExtractDockerOperator(task_id="extract_load_render", block=block, **kwargs)

    assert operator.image == "civic-extractor:test"
    assert operator.docker_url == "unix:///tmp/podman.sock"
    assert operator.command == ["civic", "extract", "--source", "seattle_crime", "--month", "2024-02", "--lake", "/lake", "--force"]
    assert operator.environment["CIVIC_LAKE"] == "/lake"
    assert operator.auto_remove == "success"
    assert operator.mount_tmp_dir is False
    [mount] = operator.mounts
    assert mount["Target"] == "/lake" and mount["Source"] == settings.lake_url() and mount["Type"] == "bind"
    assert operator.pool == "civic_seattle_crime_api"

    rendered = {name: getattr(operator, name) for name in operator.template_fields}
    assert SECRET not in json.dumps(rendered, default=str)
    assert "private_environment" not in operator.template_fields

    seen = {}

    def fake_execute(self, context):
        seen["private"] = dict(self._private_environment)
        seen["environment"] = dict(self.environment)
        return '{"source": "seattle_crime", "month": "2024-02", "rows": 7}'

    monkeypatch.setattr(DockerOperator, "execute", fake_execute)
    manifest = operator.execute({})
    assert manifest == {"source": "seattle_crime", "month": "2024-02", "rows": 7}
    assert SECRET in seen["private"]["AIRFLOW_CONN_CIVIC_SEATTLE_CRIME"]
    assert SECRET not in json.dumps(seen["environment"])
