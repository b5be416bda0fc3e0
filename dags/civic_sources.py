"""Airflow DAGs: one per source in the registry (every dataset file under
``include/civic_pipelines/datasets/``), each monthly blocks -> lake -> dbt.

A new dataset file is a new DAG with no Python: the factory reads everything from the file.
A file that does not load fails this module's import, and Airflow shows the error naming the
file; ``civic sources`` checks every file before a deploy.
"""

from airflow.sdk import get_parsing_context

from civic_pipelines import sources
from civic_pipelines.orchestration.dag_factory import build_source_dag

# A task's worker parses this file to run one task of one DAG: build only that DAG (Airflow's
# "optimizing DAG parsing delays during execution"). Each Cosmos dbt task paid for all seven DAGs
# before, 4-8 s a task under load; the scheduler and DAG processor still see every DAG.
_only = get_parsing_context().dag_id

for _name in sources.names():
    if _only is None or _only == _name:
        globals()[_name] = build_source_dag(_name)
