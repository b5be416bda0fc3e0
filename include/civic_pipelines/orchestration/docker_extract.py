"""Run one block's extractor in the slim extractor image through DockerOperator.

The command is exactly ``civic extract --source S --month M --lake /lake`` (the contract the
local mode runs in-process). The source's connection is resolved at execution time and handed to
the container as ``AIRFLOW_CONN_<ID>`` through ``private_environment``, which Airflow neither
templates nor renders, so no credential appears in the rendered fields, the command or the logs.
"""

from __future__ import annotations

import json
import os

from airflow.providers.docker.operators.docker import DockerOperator
from docker.types import Mount

CONTAINER_LAKE = "/lake"


class CivicExtractDockerOperator(DockerOperator):
    """DockerOperator mapped over blocks: ``.partial(...).expand(block=[{...}, ...])``."""

    template_fields = (*DockerOperator.template_fields, "block")

    def __init__(self, *, block: dict, lake_host_path: str, conn_id: str, **kwargs):
        self.block = block
        self.conn_id = conn_id
        command = ["civic", "extract", "--source", block["source"], "--month", block["month"], "--lake", CONTAINER_LAKE]
        if block.get("part"):
            command[6:6] = ["--part", block["part"]]  # after "--month M"
        if block.get("force"):
            command.append("--force")
        kwargs.setdefault("auto_remove", "success")
        kwargs.setdefault("mount_tmp_dir", False)
        kwargs.setdefault("retrieve_output", False)
        kwargs.setdefault("do_xcom_push", True)
        environment = {"CIVIC_LAKE": CONTAINER_LAKE, "PYTHONUNBUFFERED": "1", **kwargs.pop("environment", {})}
        super().__init__(
            command=command,
            environment=environment,
            mounts=[Mount(target=CONTAINER_LAKE, source=lake_host_path, type="bind")],
            **kwargs,
        )

    def execute(self, context):
        from airflow.sdk import BaseHook

        try:
            connection = BaseHook.get_connection(self.conn_id)
            uri = connection.get_uri()
        except Exception:  # noqa: BLE001 - no connection configured: the extractor uses the live default
            uri = None
        if uri:
            self._private_environment = {**self._private_environment, f"AIRFLOW_CONN_{self.conn_id.upper()}": uri}
        output = super().execute(context)
        # The extractor prints its manifest as the last line: that is the block's XCom.
        last = output.strip().splitlines()[-1] if isinstance(output, str) and output.strip() else output
        try:
            return json.loads(last) if isinstance(last, str) else last
        except json.JSONDecodeError:
            return last


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
