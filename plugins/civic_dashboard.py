"""The Civic data dashboard inside Airflow: the app (civic_pipelines.dashboard) mounted at /civic/
on the API server, and a "Civic data" entry in the Airflow menu that shows it inside the UI.

Thin on purpose: what the dashboard shows and how it reads the warehouse live in
include/civic_pipelines/dashboard/. Creating the app reads nothing, so the scheduler and the DAG
processor, which load plugins too, pay only the import.

Airflow does not authenticate plugin apps: the app itself requires, on every route, a user that
Airflow's configured auth manager authenticates (the UI's cookie or a Bearer token) and authorizes
for the custom view named like the menu entry (civic_pipelines.dashboard.auth).
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from civic_pipelines.dashboard import create_app
from civic_pipelines.dashboard.auth import RESOURCE_NAME

# Relative to the Airflow UI's base URL (its <base href>), so a deployment under a path prefix works.
DASHBOARD_HREF = "civic/"


class CivicDashboardPlugin(AirflowPlugin):
    name = "civic_dashboard"
    fastapi_apps = [{"app": create_app(), "url_prefix": "/civic", "name": "Civic data dashboard"}]
    # With a url_route the UI embeds the page (an iframe at /plugin/civic-data) under its own menu;
    # nav_top_level puts the link on the toolbar itself rather than in the Plugins submenu.
    external_views = [
        {
            "name": RESOURCE_NAME,  # the custom view the app authorizes: "Civic data"
            "href": DASHBOARD_HREF,
            "url_route": "civic-data",
            "destination": "nav",
            "nav_top_level": True,
            "icon": f"{DASHBOARD_HREF}static/icon.svg",
        }
    ]
