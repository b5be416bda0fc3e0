"""Dockless mobility: each operator's MDS ``provider`` API (trips and vehicle status changes /
events), one block per provider (``part``) and calendar month (UTC).

Owns: the provider configuration (Variable + one connection per provider), token auth, the
hourly walk of a month per MDS version, paging, "hour not finished" handling and the completion
of an incomplete block by later runs, JSON-schema validation with quarantine, normalisation of
0.4 / 1.x / 2.0 records into one trips table and one events table, and council-district
assignment. Contract: ``shared/contracts/austin_mds.md``; lake columns: ``docs/lake_contract_mds.md``.

**Layout**, top-down: ``contract`` (the spec, the endpoints and schemas per version family, the
errors, JSON-schema validation), ``config`` (providers, their connections, districts), ``fetch``
(the hours, the probe, the block), built on ``client`` (tokens, paged GETs) and ``transform``
(records to trip and event rows, tables, duplicates). The clock the probe and the block read is
``fetch._now`` (tests pin it there).

**Providers are configuration.** :func:`parts` reads the Airflow Variable ``civic_mds_providers``
(a JSON list; default :data:`DEFAULT_PROVIDERS`, the operators the contract names). Provider ``p``
is the connection ``civic_mds_p``: its host (a full URL with its path, e.g.
``https://mds.voiapp.io/en/ZONE``) is the base URL; extras ``mds_version`` (``0.4``, ``1.x``,
``2.0``), ``auth`` (``bearer``: the token is the password; ``oauth2``: client credentials against
``token_url``, login/password the client id/secret; ``none``) and optional ``empty_after_hours``.
``run_block`` hands every block the ``civic_mds`` connection and its session; this module ignores
both, resolves the provider's own connection and opens a session of its own per block (from
``make_session``: the same retries), which reads the environment's proxy settings once per host
rather than on each of a month's ~1,400 requests. A provider without a connection is skipped (:class:`NotPublished`) with the
reason.

**Requests.** 0.4 and 1.x: ``GET {base}/trips?end_time=YYYY-MM-DDTHH`` and
``GET {base}/status_changes?event_time=YYYY-MM-DDTHH``; 2.0: ``/trips?end_time=...`` and
``/events/historical?event_time=...``; each with its version's ``Accept`` header. ``links.next``
is followed whenever an answer carries one (the link holds the query, so none is added). A 404
means the hour does not exist yet (contract: "not ready yet" and "no data" look the same): the hour
is *missing*, the block lands incomplete rather than failing. 429 and 5xx are retried by the
session (Retry-After honoured); a 406 (the provider does not serve the configured version), 400 or
any other error fails the block.

**Auth.** A bearer token is sent as ``Authorization: Bearer``. An OAuth2 token is fetched with the
client-credentials grant (HTTP Basic, form ``grant_type=client_credentials``), cached per process
until shortly before ``expires_in`` runs out, and fetched again when it expires or when a data
request answers 401 (once per request; a second 401 fails the block). Credentials and tokens are
never logged, never put in an exception message (error bodies are redacted), the manifest or an
XCom; inside an Airflow task each token is also registered with Airflow's secrets masker.

**Completion.** The manifest lists the missing hours per endpoint. :func:`probe` returns the same
watermark as a complete block's manifest (the block is skipped), and a fresh one otherwise (the
block runs). A landing that holds no record at all (every hour answered "no data") is walked
again whole, complete or not: a provider-month without a single trip or event is more likely a
provider answering empty by mistake than a quiet month, and one walk costs ~1,400 requests. A
forced run walks every hour again. A run after an incomplete landing asks only for the missing
endpoint-hours, reads the rows already landed (``data``, ``events``, ``quarantine`` and ``hours`` parquet of the block) and
lands the union, one row per key (the new row wins), sorted, so the content checksum equals that
of a block fetched in one go. ``hours.parquet`` records each hour's answers, so an hour that turns
complete changes the content even when it holds no records.

**Validation.** Every record is validated with ``jsonschema`` against the bundled schema of its
version and endpoint (``mds_schemas/``: 0.4 and 2.0 written from the contract's field lists; 1.x
the Open Mobility Foundation's published ``provider/status_changes.json`` and ``trips.json``,
verbatim, checked record by record against their item schemas; see ``mds_schemas/README.md``); a
failing record goes to quarantine with the most relevant error. The same item schemas compiled by
``fastjsonschema`` answer first (a tenth of the time a record); only a record they refuse is asked
of ``jsonschema``, whose verdict and message stand (``contract.compiled_check``). Records are kept otherwise as published:
contract fields become columns, other keys are kept as JSON in ``extras``.

**Districts.** Trip start and end points and event points are assigned to council districts by
point-in-polygon (shapely STRtree) against a GeoJSON file: the Variable
``civic_mds_districts_path``, or the bundled generated grid (``mds_data/``; not real districts).
"""

# The source's interface (what the registry and the runner read) and the names tests use, top-down:
# the contract, the configuration, the fetch, then the pieces it is built from.
from civic_pipelines.sources.mds.client import Auth, Client, clear_token_cache, loads_lenient, log  # noqa: F401
from civic_pipelines.sources.mds.config import (  # noqa: F401
    Districts,
    Provider,
    auth_headers,
    districts_path,
    load_districts,
    parse_version,
    parts,
    provider_config,
    provider_conn_id,
)
from civic_pipelines.sources.mds.contract import (  # noqa: F401
    ACCEPT,
    BUNDLED_DISTRICTS,
    DEFAULT_PROVIDERS,
    DERIVED_EVENT_NAMESPACE,
    DISTRICT_PROPERTIES,
    DISTRICT_PROPERTY_VARIABLE,
    DISTRICTS_PATH_VARIABLE,
    ENDPOINT_NAMES,
    ENDPOINTS,
    EVENTS_SCHEMA,
    FAMILIES,
    HOURS_SCHEMA,
    ITEM_POINTERS,
    KNOWN_FIELDS,
    LANDED_TYPE,
    MAX_PAGES_PER_HOUR,
    POSTGRES_TABLES,
    PROVIDER_NAME,
    PROVIDERS_VARIABLE,
    QUARANTINE_SCHEMA,
    SCHEMA_DIR,
    SCHEMA_FILES,
    SPEC,
    TEXT_LIST,
    TIMESTAMP,
    TOKEN_ATTEMPTS,
    TRIPS_SCHEMA,
    MdsAuthError,
    MdsConfigError,
    MdsFormatError,
    _contains_combinations,
    compiled_check,
    schema,
    schema_error,
    validator,
)
from civic_pipelines.sources.mds.fetch import extract_block, hour_text, month_hours, parse_hour, probe  # noqa: F401
from civic_pipelines.sources.mds.transform import _canonical, derived_event_id, event_row, record_key, trip_row  # noqa: F401
