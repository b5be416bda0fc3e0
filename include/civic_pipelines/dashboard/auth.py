"""Who may see the dashboard: Airflow's configured auth manager decides, for every route.

Airflow does not authenticate plugin FastAPI apps (a mounted app inherits none of the core API's
router dependencies), so the app declares this dependency itself. It reuses Airflow's own
``get_user`` (airflow.api_fastapi.core_api.security): the JWT from ``Authorization: Bearer``, or
else the ``_token`` cookie the Airflow UI holds after login, so the "Civic data" menu entry (an
iframe on the same origin) keeps working for a logged-in user. A missing token answers 401, an
invalid one 403 (Airflow's own answers). The user is then authorized as a custom view
(``is_authorized_custom_view(method="GET", resource_name="Civic data")``): SimpleAuthManager grants
it to every role from viewer up; FAB maps it to "can read on Civic data".

Under the API server the auth manager is the one the server initialised. ``civic dashboard`` (the
app alone) initialises the same configured auth manager in its own process, so a token the API
server issued (same ``[api_auth] jwt_secret``) opens it too.

Airflow is imported when the first request arrives, not when the app is created: the scheduler
and the DAG processor load plugins too and never serve a request.
"""

from __future__ import annotations

import threading
from html import escape

from fastapi import Depends, HTTPException, Request, status
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import HTMLResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

# The custom view's name: the menu entry's name (plugins/civic_dashboard.py), which is what FAB's
# permission model names it.
RESOURCE_NAME = "Civic data"

_bearer = HTTPBearer(auto_error=False)
_init_lock = threading.Lock()


def auth_manager():
    """The configured auth manager: the API server's, or initialised here (the app alone)."""
    from airflow.api_fastapi.app import get_auth_manager, init_auth_manager

    try:
        return get_auth_manager()
    except RuntimeError:  # not under the API server: `civic dashboard`
        with _init_lock:
            try:
                return get_auth_manager()
            except RuntimeError:
                return init_auth_manager()


async def require_dashboard_access(request: Request, bearer: HTTPAuthorizationCredentials | None = Depends(_bearer)):
    """The FastAPI dependency every route of the app declares: the authenticated user with access,
    or HTTPException 401 (no token) / 403 (invalid token, or no access to the view)."""
    manager = auth_manager()
    from airflow.api_fastapi.core_api.security import get_user

    user = await get_user(request, _oauth_token=None, bearer_credentials=bearer)
    # an auth manager may ask a remote service (Keycloak, AWS): off the event loop, as Airflow's
    # own (sync) access dependencies run
    allowed = await run_in_threadpool(
        lambda: manager.is_authorized_custom_view(method="GET", resource_name=RESOURCE_NAME, user=user)
    )
    if not allowed:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "Forbidden")
    return user


async def refusal(request: Request, error: HTTPException):
    """Airflow's JSON refusal, except that a browser asking for a page without a token gets a
    sentence and a link to the auth manager's login page (still 401, still no data)."""
    if error.status_code != status.HTTP_401_UNAUTHORIZED or "text/html" not in request.headers.get("accept", ""):
        return await http_exception_handler(request, error)
    try:
        login = auth_manager().get_url_login(next_url=str(request.url))
    except Exception:  # noqa: BLE001 - no login page to offer: say so without a link
        login = None
    link = f' <a href="{escape(login)}" data-login>Sign in</a>' if login else ""
    return HTMLResponse(
        f"<!doctype html><title>Civic data: sign in</title><p>The Civic data dashboard is "
        f"for signed-in Airflow users.{link}</p>",
        status_code=401,
        headers=error.headers,
    )
