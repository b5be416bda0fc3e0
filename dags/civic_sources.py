"""Airflow DAGs: one per source in the registry (every dataset file under
``include/civic_pipelines/datasets/``), each monthly blocks -> lake -> dbt.

A new dataset file is a new DAG with no Python: the factory reads everything from the file.
A file that does not load fails this module's import, and Airflow shows the error naming the
file; ``civic sources`` checks every file before a deploy.
"""

from civic_pipelines import sources
from civic_pipelines.orchestration.dag_factory import build_source_dag

for _name in sources.names():
    globals()[_name] = build_source_dag(_name)
