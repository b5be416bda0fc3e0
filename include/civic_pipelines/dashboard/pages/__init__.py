"""What each dashboard page shows: its filters, its figures (headline numbers) and its charts,
each chart with the data behind it, the dbt model that feeds it and an empty state.

Every page function takes a ``Reading`` (a cursor on a consistent warehouse snapshot, see
warehouse.py) and ``Filters`` (a month range and the selected sources) and returns a ``Page``;
the HTML pages draw its charts and the JSON endpoints return its data, so both always agree. A
model that has not been built yet (its source never ran) gives an empty state, never an error.

Charts over "all months" marts (``mart_crime_by_area``, ``mart_requests_by_area``) read the mart
when the range covers every month and aggregate the fact otherwise (same rule, fewer months); the
chart's model link says which one it read.

One module per page (``crime``, ``service_requests``, ``street_works``, ``mobility``) over what they
share (``common``); this package's names are the ones the app uses.
"""

from civic_pipelines.dashboard.pages.common import (  # noqa: F401 (the pages' shared names)
    AREAS_PER_CITY,
    CRIME_SOURCES,
    MAP_POINTS,
    MOBILITY_SOURCES,
    PAGES,
    STREET_WORKS_SOURCES,
    TOP,
    Chart,
    Filters,
    Page,
    city_of,
    page_of,
    service_request_sources,
    table_counts,
)
from civic_pipelines.dashboard.pages.crime import crime  # noqa: F401
from civic_pipelines.dashboard.pages.mobility import mobility  # noqa: F401
from civic_pipelines.dashboard.pages.service_requests import service_requests  # noqa: F401
from civic_pipelines.dashboard.pages.street_works import street_works  # noqa: F401
