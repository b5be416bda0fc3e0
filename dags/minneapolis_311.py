"""Airflow DAG: Minneapolis 311 service requests (ArcGIS REST, one layer a year), monthly blocks -> lake -> dbt."""

from civic_pipelines.orchestration.dag_factory import build_source_dag

dag = build_source_dag("minneapolis_311")
