"""The dashboard: the seed projects' answers per source and the pipeline's health, as a small
web app that the Airflow plugin (plugins/civic_dashboard.py) mounts at ``/civic/`` on the API
server and ``civic dashboard`` serves alone.

| module | owns |
|---|---|
| ``app`` | the FastAPI app: routes, HTML rendering, JSON endpoints, static assets |
| ``auth`` | who may see it: every route through Airflow's configured auth manager |
| ``pages`` | what each page shows (one module per page over ``pages.common``): filters, headline numbers, charts with their data and dbt model |
| ``figures`` | Plotly figure dicts (bars, lines, maps, choropleths) |
| ``warehouse`` | lock-free reads of the DuckDB warehouse through private snapshots |
| ``health`` | the overview's per-source cards from the lake manifests and dbt test results |
| ``catalog`` | dbt's manifest (model descriptions) and run results (test outcomes) |
| ``boundaries`` | drop-in GeoJSON boundaries for the 311 choropleth |
| ``config`` | where everything is read from (environment variables) |
"""

from civic_pipelines.dashboard.app import create_app, standalone_app

__all__ = ["create_app", "standalone_app"]
