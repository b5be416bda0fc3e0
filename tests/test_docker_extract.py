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
    assert (
        mapped.operator_class is CivicExtractDockerOperator
        or mapped.operator_class.__name__ == "CivicExtractDockerOperator"
    )
    block = {"source": "seattle_crime", "month": "2024-02", "force": True, "label": "seattle_crime 2024-02"}
    kwargs = {k: v for k, v in mapped.partial_kwargs.items() if k not in ("task_id",)}
    operator = CivicExtractDockerOperator(task_id="extract_load_render", block=block, **kwargs)

    assert operator.image == "civic-extractor:test"
    assert operator.docker_url == "unix:///tmp/podman.sock"
    assert operator.command == [
        "civic",
        "extract",
        "--source",
        "seattle_crime",
        "--month",
        "2024-02",
        "--lake",
        "/lake",
        "--force",
        "--skipped-exit-code",
        "99",
    ]
    assert operator.skip_on_exit_code == [99]
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


class FakeTI:
    def __init__(self):
        self.pushed = {}

    def xcom_push(self, key, value):
        self.pushed[key] = value


def render(dag, block):
    from civic_pipelines.orchestration.docker_extract import CivicExtractDockerOperator

    mapped = dag.get_task("extract_load")
    kwargs = {k: v for k, v in mapped.partial_kwargs.items() if k not in ("task_id",)}
    return CivicExtractDockerOperator(task_id="extract_load_render", block=block, **kwargs)


def capture_run(monkeypatch, result):
    """DockerOperator.execute replaced by one that records what would reach the container."""
    from airflow.providers.docker.operators.docker import DockerOperator

    seen = {}

    def fake_execute(self, context):
        seen.update(
            private=dict(self._private_environment),
            environment=dict(self.environment),
            command=list(self.command),
            mounts=list(self.mounts),
        )
        if isinstance(result, Exception):
            raise result
        return result

    monkeypatch.setattr(DockerOperator, "execute", fake_execute)
    return seen


def test_a_skipped_block_is_a_skipped_task_with_its_manifest(docker_dag, monkeypatch):
    from airflow.providers.docker.exceptions import DockerContainerFailedSkipException
    from airflow.sdk.exceptions import AirflowSkipException

    manifest = {
        "source": "seattle_crime",
        "month": "2024-02",
        "skipped": True,
        "reason": "source unchanged since last landing",
    }
    logs = ["2026-12-07 INFO civic_pipelines.extract: seattle_crime 2024-02 unchanged", json.dumps(manifest)]
    capture_run(monkeypatch, DockerContainerFailedSkipException("exit 99", logs=logs))
    operator = render(docker_dag, {"source": "seattle_crime", "month": "2024-02", "label": "seattle_crime 2024-02"})
    ti = FakeTI()
    with pytest.raises(AirflowSkipException, match="seattle_crime 2024-02: source unchanged since last landing"):
        operator.execute({"ti": ti})
    assert ti.pushed == {"manifest": manifest}, "the skipped block's manifest is its XCom, as in local mode"


def test_the_extractor_exits_99_for_a_skip_only_when_asked(tmp_path, monkeypatch, capsys):
    from civic_pipelines.cli import SKIPPED_EXIT_CODE, main

    assert SKIPPED_EXIT_CODE == 99
    args = ["extract", "--source", "seattle_crime", "--month", "2023-03", "--lake", str(tmp_path), "--dry-run"]
    assert main(args) == 0, "a skip is a success for scripts"
    assert main([*args, "--skipped-exit-code", "99"]) == 99
    lines = capsys.readouterr().out.strip().splitlines()
    assert json.loads(lines[-1])["skipped"] is True, "the manifest still prints last"


def test_every_mds_provider_connection_and_variable_reaches_its_container(monkeypatch):
    from civic_pipelines.orchestration.dag_factory import build_source_dag

    providers = ["voi", "dott", "lyft"]
    monkeypatch.setenv("AIRFLOW_VAR_CIVIC_EXTRACTOR_IMAGE", "civic-extractor:test")
    monkeypatch.setenv("AIRFLOW_VAR_CIVIC_MDS_PROVIDERS", json.dumps(providers))
    monkeypatch.setenv("AIRFLOW_VAR_CIVIC_MDS_DISTRICT_PROPERTY", "council_district")
    monkeypatch.delenv("AIRFLOW_VAR_CIVIC_MDS_DISTRICTS_PATH", raising=False)
    for provider in providers:
        monkeypatch.setenv(
            f"AIRFLOW_CONN_CIVIC_MDS_{provider.upper()}",
            json.dumps(
                {
                    "conn_type": "http",
                    "host": f"http://127.0.0.1:9/{provider}",
                    "login": f"id-{provider}",
                    "password": f"{SECRET}-{provider}",
                    "extra": {"mds_version": "2.0", "auth": "oauth2", "token_url": "/token"},
                }
            ),
        )
    dag = build_source_dag("mds", extract_mode="docker")
    for provider in providers:
        seen = capture_run(monkeypatch, json.dumps({"source": "mds", "part": provider, "rows": 3}))
        operator = render(
            dag, {"source": "mds", "part": provider, "month": "2024-02", "label": f"mds {provider} 2024-02"}
        )
        assert operator.command[:8] == ["civic", "extract", "--source", "mds", "--part", provider, "--month", "2024-02"]
        assert operator.execute({}) == {"source": "mds", "part": provider, "rows": 3}
        variable = f"AIRFLOW_CONN_CIVIC_MDS_{provider.upper()}"
        handed = json.loads(seen["private"][variable])
        assert handed["password"] == f"{SECRET}-{provider}" and handed["login"] == f"id-{provider}"
        assert handed["host"] == f"http://127.0.0.1:9/{provider}" and handed["extra"]["auth"] == "oauth2"
        others = [p for p in providers if p != provider]
        assert not any(f"CIVIC_MDS_{p.upper()}" in name for p in others for name in seen["private"]), (
            "a block gets its own provider's connection only"
        )
        assert SECRET not in json.dumps(seen["environment"]) + json.dumps(seen["command"])
        # The Variables the block reads: the container has no Airflow.
        assert json.loads(seen["environment"]["AIRFLOW_VAR_CIVIC_MDS_PROVIDERS"]) == providers
        assert seen["environment"]["AIRFLOW_VAR_CIVIC_MDS_DISTRICT_PROPERTY"] == "council_district"
        assert "AIRFLOW_VAR_CIVIC_MDS_DISTRICTS_PATH" not in seen["environment"], "unset: the bundled file"


def test_an_s3_lake_is_passed_through_with_its_aws_connection(monkeypatch):
    from civic_pipelines.orchestration.dag_factory import build_source_dag

    monkeypatch.setenv("CIVIC_LAKE", "s3://civic-lake/prefix")
    monkeypatch.setenv(
        "AIRFLOW_CONN_CIVIC_LAKE_S3",
        json.dumps(
            {
                "conn_type": "aws",
                "login": "AKIDEXAMPLE",
                "password": SECRET,
                "extra": {"region_name": "us-east-1", "endpoint_url": "http://127.0.0.1:9"},
            }
        ),
    )
    monkeypatch.setenv(
        "AIRFLOW_CONN_CIVIC_SEATTLE_CRIME", json.dumps({"conn_type": "http", "host": "127.0.0.1", "schema": "http"})
    )
    dag = build_source_dag("seattle_crime", extract_mode="docker")
    operator = render(dag, {"source": "seattle_crime", "month": "2024-02", "label": "seattle_crime 2024-02"})
    assert operator.command[6:8] == ["--lake", "s3://civic-lake/prefix"]
    assert operator.mounts == [], "nothing to bind-mount for an object-store lake"
    assert operator.environment["CIVIC_LAKE"] == "s3://civic-lake/prefix"
    assert operator.environment["CIVIC_LAKE_CONN_ID"] == "civic_lake_s3"
    seen = capture_run(monkeypatch, '{"source": "seattle_crime"}')
    operator.execute({})
    assert sorted(seen["private"]) == ["AIRFLOW_CONN_CIVIC_LAKE_S3", "AIRFLOW_CONN_CIVIC_SEATTLE_CRIME"]
    assert json.loads(seen["private"]["AIRFLOW_CONN_CIVIC_LAKE_S3"])["password"] == SECRET
    assert SECRET not in json.dumps(seen["environment"]) + json.dumps(seen["command"])
