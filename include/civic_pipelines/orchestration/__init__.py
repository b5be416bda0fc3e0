"""Airflow glue: the DAG factory, the docker extract operator and the Cosmos dbt group.

Everything here imports Airflow; the rest of the package does not, so the extractor image
stays free of it.
"""
