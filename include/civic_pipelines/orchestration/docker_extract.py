"""Run one block's extractor in the slim extractor image through DockerOperator.

The command is exactly ``civic extract --source S --month M [--part P] --lake L
--skipped-exit-code 99`` (the contract the local mode runs in-process). What owns this module:

* **Connections.** Every connection the block reads (``connections.block_conn_ids``: the
  source's, an MDS provider's ``civic_mds_<provider>``, the lake's ``civic_lake_s3`` for an
  ``s3://`` lake) is resolved at execution time and handed to the container as
  ``AIRFLOW_CONN_<ID>`` (Airflow's JSON form) through ``private_environment``, which Airflow
  neither templates nor renders: no credential appears in the rendered fields, the command or the
  logs. The Airflow Variables the block reads (its spec's ``variables``) go in as
  ``AIRFLOW_VAR_<KEY>``: the container has no Airflow to ask.
* **The lake.** A local lake is bind-mounted at ``/lake``; an ``s3://`` lake is passed as is
  (no mount) and reached through its connection.
* **Skips.** ``civic extract`` exits with :data:`SKIPPED_EXIT_CODE` when it skipped the block;
  ``skip_on_exit_code`` makes that a skipped task, and the manifest (the container's last JSON
  line) is pushed under the XCom key ``manifest``, exactly as local mode does.
"""

from __future__ import annotations

import json
import os

from airflow.providers.docker.operators.docker import DockerOperator
from docker.types import Mount

from civic_pipelines.cli import SKIPPED_EXIT_CODE

CONTAINER_LAKE = "/lake"


def is_remote(lake: str) -> bool:
    return "://" in lake


def block_variables(source: str, part: str | None = None) -> dict[str, str]:
    """``AIRFLOW_VAR_<KEY>`` -> value for every Airflow Variable the block reads that is set
    (MDS: the provider list, the districts file and property; an ArcGIS dataset: its layers)."""
    from civic_pipelines import sources
    from civic_pipelines.orchestration.variables import get_variable

    found = {}
    for key in sources.spec(source).variables:
        value = get_variable(key, "")
        if value not in (None, ""):
            found[f"AIRFLOW_VAR_{key.upper()}"] = value if isinstance(value, str) else json.dumps(value)
    return found


def connection_json(conn_id: str) -> str | None:
    """The connection in Airflow's JSON form (types and nested extras survive, unlike a URI),
    or None when Airflow has no such connection."""
    from airflow.sdk import BaseHook

    try:
        return BaseHook.get_connection(conn_id).as_json()
    except Exception:  # noqa: BLE001 - "not found" has different types across Airflow versions
        return None


def manifest_from_lines(lines) -> dict | str | None:
    """The block's manifest: the last line of the container's output that is a JSON object
    (stderr and stdout are interleaved; the extractor prints its manifest last)."""
    if isinstance(lines, (str, bytes)):
        lines = [lines]
    last = None
    for line in reversed(list(lines or [])):
        text = line.decode("utf-8", "replace") if isinstance(line, bytes) else str(line)
        for candidate in reversed(text.strip().splitlines()):
            last = last or candidate
            if candidate.startswith("{"):
                try:
                    value = json.loads(candidate)
                except json.JSONDecodeError:
                    continue
                if isinstance(value, dict):
                    return value
    return last


class CivicExtractDockerOperator(DockerOperator):
    """DockerOperator mapped over blocks: ``.partial(...).expand(block=[{...}, ...])``.

    ``lake_host_path`` is the lake as the container engine sees it: a folder on the engine's host
    (bind-mounted at ``/lake``) or an ``s3://`` URL (passed through). ``conn_id`` is the source's
    connection; the others the block needs are found from the block itself at execution time.
    """

    template_fields = (*DockerOperator.template_fields, "block")

    def __init__(self, *, block: dict, lake_host_path: str, conn_id: str, **kwargs):
        self.block = block
        self.conn_id = conn_id
        self.lake = lake_host_path
        lake = lake_host_path if is_remote(lake_host_path) else CONTAINER_LAKE
        command = ["civic", "extract", "--source", block["source"], "--month", block["month"], "--lake", lake]
        if block.get("part"):
            command[4:4] = ["--part", block["part"]]  # before --month, as the CLI documents it
        if block.get("force"):
            command.append("--force")
        command += ["--skipped-exit-code", str(SKIPPED_EXIT_CODE)]
        kwargs.setdefault("auto_remove", "success")
        kwargs.setdefault("mount_tmp_dir", False)
        kwargs.setdefault("retrieve_output", False)
        kwargs.setdefault("do_xcom_push", True)
        kwargs.setdefault("skip_on_exit_code", SKIPPED_EXIT_CODE)
        environment = {"CIVIC_LAKE": lake, "PYTHONUNBUFFERED": "1", **kwargs.pop("environment", {})}
        if is_remote(lake_host_path):
            from civic_pipelines import settings

            environment.setdefault("CIVIC_LAKE_CONN_ID", settings.lake_conn_id())
            mounts = []
        else:
            mounts = [Mount(target=CONTAINER_LAKE, source=lake_host_path, type="bind")]
        super().__init__(command=command, environment=environment, mounts=mounts, **kwargs)

    def execute(self, context):
        from airflow.providers.docker.exceptions import DockerContainerFailedSkipException
        from airflow.sdk.exceptions import AirflowSkipException

        from civic_pipelines import connections

        source, part = self.block["source"], self.block.get("part")
        private = {}
        for conn_id in connections.block_conn_ids(source, part, self.lake):
            value = connection_json(conn_id)
            if value:  # none configured: the extractor uses the source's live default
                private[connections.env_var_name(conn_id)] = value
        self._private_environment = {**self._private_environment, **private}
        self.environment = {**self.environment, **block_variables(source, part)}
        self.log.info(
            "block %s: connections handed over (values private): %s",
            self.block.get("label"),
            ", ".join(sorted(private)) or "none",
        )
        try:
            output = super().execute(context)
        except DockerContainerFailedSkipException as skipped:
            manifest = manifest_from_lines(getattr(skipped, "logs", None))
            reason = manifest.get("reason") if isinstance(manifest, dict) else "skipped by the extractor"
            if isinstance(manifest, dict) and context.get("ti") is not None:
                context["ti"].xcom_push(key="manifest", value=manifest)
            raise AirflowSkipException(f"{self.block.get('label')}: {reason}") from None
        return manifest_from_lines(output)


def docker_kwargs() -> dict:
    """Image and engine settings from Airflow Variables (env-overridable), read at parse time."""
    from civic_pipelines.orchestration.variables import get_variable

    return {
        "image": get_variable("civic_extractor_image", "civic-extractor:latest"),
        "docker_url": get_variable("civic_docker_url", os.environ.get("DOCKER_HOST", "unix://var/run/docker.sock")),
        "network_mode": get_variable("civic_docker_network", "bridge"),
        # uid[:gid] the extractor runs as (empty: the image's root), e.g. "50000:0" so the blocks it
        # lands belong to Astro's `astro` user like the local mode's do.
        "user": get_variable("civic_docker_user", "") or None,
    }
