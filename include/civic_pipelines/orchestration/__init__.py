"""Airflow glue: the DAG factory, the docker extract operator and the Cosmos dbt group.

Everything here imports Airflow; the rest of the package does not, so the extractor image
stays free of it. A source or the planner reading a deployment variable asks
:mod:`civic_pipelines.core.variables`; importing this package (an Airflow process parsing a DAG
file) registers Airflow's Variables as where those live beyond the environment, and Airflow's
log masker for the secrets a source fetches at run time (:mod:`civic_pipelines.core.secrets`).
"""

from civic_pipelines.core import secrets as _secrets
from civic_pipelines.core import variables as _variables
from civic_pipelines.orchestration.variables import airflow_mask_secret as _airflow_mask_secret
from civic_pipelines.orchestration.variables import airflow_variable as _airflow_variable

_variables.register_lookup(_airflow_variable)
_secrets.register_masker(_airflow_mask_secret)
