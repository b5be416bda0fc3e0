"""What each hand-written source declares to the DAG factory: its ``SPEC`` and, for a source with a
PostgreSQL mirror, its ``POSTGRES_TABLES``.

They live here, not in the source modules (which re-export them as ``SPEC`` and ``POSTGRES_TABLES``),
because parsing the DAG files needs only these, and a source module imports its extractor's
libraries (pyarrow, requests, ...) at module level: seconds a parse would pay for nothing. Nothing
here imports more than the standard library and ``sources.base``.
"""

from __future__ import annotations

from civic_pipelines.core.spec import Capabilities, SourceSpec

# ---------------------------------------------------------------- mds (civic_pipelines.sources.mds)

PROVIDERS_VARIABLE = "civic_mds_providers"
DISTRICTS_PATH_VARIABLE = "civic_mds_districts_path"
DISTRICT_PROPERTY_VARIABLE = "civic_mds_district_property"

MDS_SPEC = SourceSpec(
    name="mds",
    title="Dockless mobility (MDS provider API): trips and vehicle events per operator",
    publisher="Each scooter and bike operator's own MDS provider API (the feeds Austin Transportation receives)",
    # Austin's derived trip dataset (contract: Socrata 7d8e-dm7r) starts in 2018.
    first_month="2018-01",
    # Never requested: each provider has its own connection, civic_mds_<provider>.
    default_base_url="(per provider: connection civic_mds_<provider>)",
    natural_key="trip_id",
    description=(
        "Scooter and bike trips and vehicle status changes from each operator's MDS provider API (0.4, 1.x, 2.0), "
        "walked hour by hour, validated against the MDS JSON schema of the version, normalised into one trips and one "
        "events table and assigned to council districts; a block is one provider and one month."
    ),
    tags=("mobility", "mds", "austin"),
    pool_slots=2,
    dbt_tag="mds",
    parts=(),
    parts_param="providers",
    # Providers are configuration (parts()); a block holds trips, events and the hours walked, lands
    # incomplete while hours are unpublished, and is mirrored into PostgreSQL (POSTGRES_TABLES).
    capabilities=Capabilities(configured_parts=True, several_tables=True, incomplete_hours=True, postgres_sink=True),
    # The deployment variables a block reads (docker mode forwards them to the container).
    variables=(PROVIDERS_VARIABLE, DISTRICTS_PATH_VARIABLE, DISTRICT_PROPERTY_VARIABLE),
    part_conn_id="civic_mds_{part}",
)

# The PostgreSQL mirror (civic_pipelines.sinks.postgres, the DAG's sync_postgres task): the
# block's trips and events, upserted on their keys, scoped to the block by provider and month.
MDS_POSTGRES_TABLES = {
    "data": {"table": "mds_trips", "key": ["provider", "trip_id"], "block_key": ["provider", "_block_month"]},
    "events": {"table": "mds_events", "key": ["provider", "event_id"], "block_key": ["provider", "_block_month"]},
}

# ---------------------------------------------------------------- srwr (civic_pipelines.sources.srwr)

SRWR_SPEC = SourceSpec(
    name="srwr",
    title="Scottish Road Works Register (SRWR) exports",
    publisher="SRWR, the Scottish Road Works Register: the export API at downloads.srwr.scot (zipped headerless CSV behind a pre-signed URL)",
    # The contract's example past year; the register's first export year is not documented.
    first_month="2020-01",
    default_base_url="https://downloads.srwr.scot",
    natural_key="activity_id",
    description=(
        "Scottish road works activities with their phases, undertaker phases, sites and districts, decoded from "
        "SRWR's mixed-record CSV exports (a year file for past years, a month file for the current year); a block "
        "is the activities whose first undertaker phase starts in the month."
    ),
    tags=("street_works", "srwr", "scotland"),
    dbt_tag="srwr",
    capabilities=Capabilities(several_tables=True),  # one download decodes into the activity table and five more
)


# ---------------------------------------------------------------- street_manager (civic_pipelines.sources.street_manager)

STREET_MANAGER_SPEC = SourceSpec(
    name="street_manager",
    title="Street Manager (England): permits, activities and section 58 notices",
    publisher="Department for Transport (Street Manager open data)",
    # Month M is published during the 1st of M+1 (the hour is not documented): the run at 06:00
    # UTC on the 1st lands M; an archive still missing then is skipped as not published.
    cron="0 6 1 * *",
    # The contract gives 2020 as the first year; Street Manager went live in July 2020 and public
    # consumers start at permit/2020/07.zip (earlier months are simply not published: skipped).
    first_month="2020-07",
    default_base_url="https://opendata.manage-roadworks.service.gov.uk",
    natural_key="event_reference",
    description=(
        "Street works in England from DfT Street Manager: one zip of JSON events per type and month "
        "(permit ~1.1 million events, about 1 GB; activity; section 58), streamed and flattened into typed parquet."
    ),
    tags=("street_works", "england", "dft"),
    pool_slots=2,
    dbt_tag="street_manager",
    parts=("permit", "activity", "section_58"),
    capabilities=Capabilities(streamed=True),  # a permit archive is ~1 GB: written batch by batch
)


SPECS: dict[str, SourceSpec] = {spec.name: spec for spec in (MDS_SPEC, SRWR_SPEC, STREET_MANAGER_SPEC)}
POSTGRES_TABLES: dict[str, dict] = {"mds": MDS_POSTGRES_TABLES}
