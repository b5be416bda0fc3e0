"""Airflow DAG ``civic_marts``: the dbt marts, built when the source DAGs' Assets change (a landed
block, a rebuilt fact); see ``civic_pipelines/orchestration/marts_dag.py``.

A file of its own: it parses in a few seconds beside the source DAGs' file, and a slow parse of
one (Airflow's import timeout) does not hold up the other's runs.
"""

from airflow.sdk import get_parsing_context

from civic_pipelines.orchestration.marts_dag import build_marts_dag

# A task of another DAG parses this folder too: build the marts DAG only for its own tasks (as
# civic_sources.py builds only the task's DAG), so a source's task pays nothing for it.
if get_parsing_context().dag_id in (None, "civic_marts"):
    civic_marts = build_marts_dag()
