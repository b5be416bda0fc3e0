"""Airflow DAG: Toronto 311 service requests (CKAN yearly CSV), monthly blocks -> lake -> dbt."""

from civic_pipelines.orchestration.dag_factory import build_source_dag

dag = build_source_dag("toronto_311")
