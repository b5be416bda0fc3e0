"""dlt's side of bench/vs_dlt.py, in its child process: the ``rest_api`` source configured on our
adapters' paging and query (``dlt_config``) and a ``dlt.pipeline`` into DuckDB, with parquet or
dlt's default loader file format.
"""

from __future__ import annotations

import json
import os
import resource
import time
from pathlib import Path

import _common as common
from vs_dlt_child import SOURCES, loopback_only, peak_mb


def dlt_config(kind: str, base_url: str, plan: dict) -> dict:
    from dlt.sources.helpers.rest_client.paginators import OffsetPaginator

    if kind == "soda":
        paginator = {
            "type": "offset",
            "limit": plan["page_size"],
            "offset_param": "$offset",
            "limit_param": "$limit",
            "total_path": None,
            "stop_after_empty_page": True,
        }
        endpoint = {"path": plan["path"], "params": plan["params"], "data_selector": "$"}
    else:

        class ExceededTransferLimitPaginator(OffsetPaginator):
            """Offset paging that continues while the page says ``exceededTransferLimit: true``
            (ArcGIS omits the flag on the last page)."""

            def update_state(self, response, data=None) -> None:
                super().update_state(response, data)
                if response.json().get("exceededTransferLimit") is not True:
                    self._has_next_page = False

        paginator = ExceededTransferLimitPaginator(
            limit=plan["page_size"],
            offset_param="resultOffset",
            limit_param="resultRecordCount",
            total_path=None,
            stop_after_empty_page=True,
        )
        endpoint = {"path": plan["path"], "params": plan["params"], "data_selector": "features"}
    return {
        "client": {"base_url": base_url, "paginator": paginator},
        "resources": [{"name": SOURCES[kind]["table"], "endpoint": endpoint}],
    }


def child_dlt(args) -> dict:
    refused = loopback_only()
    work = Path(args.workdir)
    os.environ.update(
        {
            "RUNTIME__DLTHUB_TELEMETRY": "false",
            # dlt looks for secrets in Airflow Variables whenever Airflow is importable (it is, in this
            # project): that imports Airflow and reads its metadata database. Not part of loading.
            "PROVIDERS__ENABLE_AIRFLOW_SECRETS": "false",
            "DLT_DATA_DIR": str(work / "dlt_data"),
            "DLT_PROJECT_DIR": str(work / "dlt_project"),
        }
    )
    (work / "dlt_project").mkdir(parents=True, exist_ok=True)
    import dlt
    import duckdb
    from dlt.sources.rest_api import rest_api_source

    plan = json.loads(args.plan)
    table = SOURCES[args.kind]["table"]
    fmt = "parquet" if args.config == "dlt-parquet" else None
    # dlt's one-off start-up (resolving its configuration providers), not counted, as our side's
    # imports are not.
    warm = time.perf_counter()
    rest_api_source(dlt_config(args.kind, args.base_url, plan))
    startup = time.perf_counter() - warm
    memory = {"rss_start_mb": common.current_rss_mb()}
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    started = time.perf_counter()
    source = rest_api_source(dlt_config(args.kind, args.base_url, plan))
    pipeline = dlt.pipeline(
        pipeline_name=f"vs_dlt_{args.kind}_{args.config.replace('-', '_')}",
        destination=dlt.destinations.duckdb(str(work / "dlt.duckdb")),
        dataset_name="bench",
        pipelines_dir=str(work / "dlt_pipelines"),
    )
    info = pipeline.run(source, loader_file_format=fmt) if fmt else pipeline.run(source)
    seconds = time.perf_counter() - started
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    info.raise_on_failed_jobs()
    steps = {}
    trace = pipeline.last_trace
    for step in trace.steps if trace else []:
        if step.started_at and step.finished_at and step.step != "run":
            steps[step.step] = (step.finished_at - step.started_at).total_seconds()
    con = duckdb.connect(str(work / "dlt.duckdb"), read_only=True)
    rows = con.execute(f"SELECT count(*) FROM bench.{table}").fetchone()[0]
    columns = len(con.execute(f"DESCRIBE bench.{table}").fetchall())
    con.close()
    return {
        "rows": rows,
        "seconds": seconds,
        "peak_rss_mb": peak_mb(),
        "cpu_seconds": (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime),
        "steps": steps,
        "startup_seconds": startup,
        "columns": columns,
        "memory": memory,
        "loader_file_format": fmt or "default (insert_values)",
        "refused": refused,
    }
