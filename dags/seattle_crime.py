"""Airflow DAG: Seattle police crime offenses (Socrata SODA), monthly blocks -> lake -> dbt."""

from civic_pipelines.orchestration.dag_factory import build_source_dag

dag = build_source_dag("seattle_crime")
