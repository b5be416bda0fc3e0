"""Airflow DAG ``civic_marts``: the dbt marts, built when the source DAGs' Assets change (a landed
block, a rebuilt fact); see ``civic_pipelines/orchestration/marts_dag.py``.

A file of its own: it parses in a few seconds beside the source DAGs' file, and a slow parse of
one (Airflow's import timeout) does not hold up the other's runs.
"""

from civic_pipelines.orchestration.marts_dag import build_marts_dag

civic_marts = build_marts_dag()
