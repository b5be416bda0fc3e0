"""MDS's contract: the source's spec, the endpoints and schema files per MDS version family, the lake
schemas, the errors, and the validation of a record against its version's JSON Schema."""

from __future__ import annotations

import json
import re
import uuid
from functools import cache
from pathlib import Path

import pyarrow as pa

from civic_pipelines.core import contract
from civic_pipelines.core.contract import LANDED_TYPE  # noqa: F401 - re-exported for the package
from civic_pipelines.http import SourceHTTPError
from civic_pipelines.sources import declared

PROVIDERS_VARIABLE = declared.PROVIDERS_VARIABLE
DISTRICTS_PATH_VARIABLE = declared.DISTRICTS_PATH_VARIABLE
DISTRICT_PROPERTY_VARIABLE = declared.DISTRICT_PROPERTY_VARIABLE

SPEC = declared.MDS_SPEC  # declared with its capabilities in sources/declared.py: parsing reads it there

# The PostgreSQL mirror (civic_pipelines.sinks.postgres, the DAG's sync_postgres task): the
# block's trips and events, upserted on their keys, scoped to the block by provider and month.
POSTGRES_TABLES = declared.MDS_POSTGRES_TABLES

# The operators the contract names (Voi; Lyft, Bolt and Dott from public consumer projects).
DEFAULT_PROVIDERS = ("voi", "lyft", "bolt", "dott")
DISTRICT_PROPERTIES = ("council_district", "district")
PROVIDER_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")

SCHEMA_DIR = Path(__file__).parents[1] / "mds_schemas"
BUNDLED_DISTRICTS = Path(__file__).parents[1] / "mds_data" / "austin_council_districts_GENERATED_GRID.geojson"

FAMILIES = ("0.4", "1.x", "2.0")
ACCEPT = {
    "0.4": "application/vnd.mds.provider+json;version={version}",
    "1.x": "application/vnd.mds+json;version={version}",
    "2.0": "application/vnd.mds+json;version={version}",
}
# endpoint -> (path, hour parameter, payload key) per family. "events" is status_changes before 2.0.
ENDPOINTS = {
    "0.4": {"trips": ("trips", "end_time", "trips"), "events": ("status_changes", "event_time", "status_changes")},
    "1.x": {"trips": ("trips", "end_time", "trips"), "events": ("status_changes", "event_time", "status_changes")},
    "2.0": {"trips": ("trips", "end_time", "trips"), "events": ("events/historical", "event_time", "events")},
}
ENDPOINT_NAMES = ("trips", "events")
# The bundled JSON schema of each payload is named after its payload key and family (trips_0.4.json,
# status_changes_1.x.json, events_2.0.json, ...).
SCHEMA_FILES = {
    (family, endpoint): f"{ENDPOINTS[family][endpoint][2]}_{family}.json"
    for family in FAMILIES
    for endpoint in ENDPOINT_NAMES
}
MAX_PAGES_PER_HOUR = 10_000
TOKEN_ATTEMPTS = 4
DERIVED_EVENT_NAMESPACE = uuid.NAMESPACE_URL

TIMESTAMP = pa.timestamp("ms", tz="UTC")
TEXT_LIST = pa.list_(pa.string())


def _hourly_schema(columns: list[tuple[str, pa.DataType]]) -> pa.Schema:
    """A table of rows read hour by hour: its columns, the hour they were read for, the block columns."""
    return contract.data_schema([*columns, ("_hour", TIMESTAMP)])


TRIPS_SCHEMA = _hourly_schema(
    [
        ("provider", pa.string()),
        ("trip_id", pa.string()),
        ("mds_version", pa.string()),
        ("provider_id", pa.string()),
        ("provider_name", pa.string()),
        ("device_id", pa.string()),
        ("vehicle_id", pa.string()),
        ("vehicle_type", pa.string()),
        ("propulsion_types", TEXT_LIST),
        ("trip_type", TEXT_LIST),
        ("start_time", TIMESTAMP),
        ("end_time", TIMESTAMP),
        ("publication_time", TIMESTAMP),
        ("trip_duration", pa.int64()),
        ("trip_distance", pa.int64()),
        ("accuracy", pa.int64()),
        ("start_lon", pa.float64()),
        ("start_lat", pa.float64()),
        ("end_lon", pa.float64()),
        ("end_lat", pa.float64()),
        ("route_points", pa.int32()),
        ("route", pa.string()),
        ("standard_cost", pa.int64()),
        ("actual_cost", pa.int64()),
        ("currency", pa.string()),
        ("parking_verification_url", pa.string()),
        ("accessibility_attributes", pa.string()),
        ("council_district_start", pa.string()),
        ("council_district_end", pa.string()),
        ("extras", pa.string()),
    ]
)
EVENTS_SCHEMA = _hourly_schema(
    [
        ("provider", pa.string()),
        ("event_id", pa.string()),
        ("event_id_derived", pa.bool_()),
        ("mds_version", pa.string()),
        ("provider_id", pa.string()),
        ("device_id", pa.string()),
        ("event_time", TIMESTAMP),
        ("event_type", pa.string()),
        ("event_type_reason", pa.string()),
        ("event_types", TEXT_LIST),
        ("vehicle_state", pa.string()),
        ("lon", pa.float64()),
        ("lat", pa.float64()),
        ("battery_fraction", pa.float64()),
        ("trip_ids", TEXT_LIST),
        ("associated_ticket", pa.string()),
        ("council_district", pa.string()),
        ("extras", pa.string()),
    ]
)
HOURS_SCHEMA = contract.data_schema(
    [
        ("provider", pa.string()),
        ("hour", TIMESTAMP),
        ("trips_status", pa.int32()),
        ("events_status", pa.int32()),
        ("trips", pa.int32()),
        ("events", pa.int32()),
        ("trips_pages", pa.int32()),
        ("events_pages", pa.int32()),
        ("complete", pa.bool_()),
    ]
)
QUARANTINE_SCHEMA = _hourly_schema(
    [
        ("provider", pa.string()),
        ("mds_version", pa.string()),
        ("endpoint", pa.string()),
        ("record_id", pa.string()),
        ("raw", pa.string()),
        ("_reason", pa.string()),
        ("_reason_kind", pa.string()),
    ]
)

# The contract's field list per family and endpoint: anything else goes to ``extras``.
KNOWN_FIELDS = {
    ("0.4", "trips"): frozenset(
        {
            "provider_id",
            "provider_name",
            "device_id",
            "vehicle_id",
            "vehicle_type",
            "propulsion_type",
            "trip_id",
            "trip_duration",
            "trip_distance",
            "route",
            "accuracy",
            "start_time",
            "end_time",
            "publication_time",
            "parking_verification_url",
            "standard_cost",
            "actual_cost",
            "currency",
        }
    ),
    ("0.4", "events"): frozenset(
        {
            "event_type",
            "event_type_reason",
            "event_time",
            "event_location",
            "battery_pct",
            "associated_trip",
            "associated_ticket",
        }
    ),
    ("2.0", "trips"): frozenset(
        {
            "provider_id",
            "device_id",
            "trip_id",
            "trip_type",
            "start_time",
            "end_time",
            "start_location",
            "end_location",
            "duration",
            "distance",
            "accessibility_attributes",
        }
    ),
    ("2.0", "events"): frozenset(
        {
            "event_id",
            "provider_id",
            "device_id",
            "event_types",
            "vehicle_state",
            "location",
            "battery_percent",
            "timestamp",
            "trip_ids",
        }
    ),
}
KNOWN_FIELDS[("1.x", "trips")] = (KNOWN_FIELDS[("0.4", "trips")] - {"propulsion_type"}) | {"propulsion_types"}
# 1.x status changes (OMF provider/status_changes.json): the 1.0 state model (vehicle_state +
# event_types, trip_id) in the 0.4 envelope. Fields without an events column stay in extras.
KNOWN_FIELDS[("1.x", "events")] = frozenset(
    {
        "provider_id",
        "device_id",
        "vehicle_state",
        "event_types",
        "event_time",
        "event_location",
        "battery_pct",
        "trip_id",
        "associated_ticket",
    }
)


class MdsConfigError(ValueError):
    """A provider's configuration cannot work (unknown version or auth mode, missing token URL)."""


class MdsAuthError(SourceHTTPError):
    """The provider refused the credentials (the message never holds them)."""


class MdsFormatError(SourceHTTPError):
    """The provider answered 200 with something that is not its version's response shape."""


# ---------------------------------------------------------------- validation


# The published (OMF) schemas describe a whole payload; a record is checked against the payload's
# item schema, resolved inside the published document (its ``$ref``s point at its definitions).
ITEM_POINTERS = {
    ("1.x", "trips"): ("properties", "data", "properties", "trips", "items"),
    ("1.x", "events"): ("properties", "data", "properties", "status_changes", "items"),
}


@cache
def schema(family: str, endpoint: str) -> dict:
    return json.loads((SCHEMA_DIR / SCHEMA_FILES[(family, endpoint)]).read_text())


def _contains_combinations(item: dict) -> dict:
    """The published 1.x status-change item with its vehicle_state / event_types combination rule
    read as the release schemas state it: each ``oneOf`` branch means "``event_types`` *contains*
    one of the state's events" (OMF issue #690 quotes the released 1.0.0 / 1.1.0 files as
    ``"event_types" -> "contains" -> "enum"``). The text at the commit shipped here writes it as
    ``items: {not: {enum}}`` + ``additionalItems: {enum}``, which under its own draft-06 forbids
    every listed event (``items`` as one schema applies to every element and ``additionalItems`` is
    then ignored), so it would refuse ``on_trip`` + ``trip_start`` and accept ``removed`` +
    ``trip_start``. The file stays verbatim; this copy is what records are checked against."""
    item = json.loads(json.dumps(item))
    for rule in item.get("allOf", []):
        for branch in rule.get("oneOf", []):
            events = branch.get("properties", {}).get("event_types", {})
            listed = events.get("additionalItems", {}).get("enum")
            if listed is not None and "items" in events:
                branch["properties"]["event_types"] = {"contains": {"enum": listed}}
    return item


@cache
def validator(family: str, endpoint: str):
    import jsonschema

    document = schema(family, endpoint)
    cls = jsonschema.validators.validator_for(document)
    cls.check_schema(document)
    pointer = ITEM_POINTERS.get((family, endpoint))
    if pointer is None:
        return cls(document)
    item = document
    for key in pointer:
        item = item[key]
    if endpoint == "events":
        item = _contains_combinations(item)
    # evolve keeps the whole document as the root its "#/definitions/..." references resolve in
    return cls(document).evolve(schema=item)


def _without_ids(node):
    if isinstance(node, dict):
        return {key: _without_ids(value) for key, value in node.items() if key != "$id"}
    if isinstance(node, list):
        return [_without_ids(value) for value in node]
    return node


@cache
def compiled_check(family: str, endpoint: str):
    """The record schema :func:`validator` checks against, compiled to Python by fastjsonschema
    (a tenth of jsonschema's time a record; an MDS month is ~1,500 small pages). It is only the
    fast "valid" answer: a record it refuses is judged again by :func:`validator`, which words the
    reason, so the verdict can only differ if this one accepts what jsonschema refuses
    (tests/test_mds_schemas.py fuzzes both against each other).

    Its root is the item schema with the document's ``definitions`` beside it, so the item's
    ``#/definitions/...`` references resolve as they do in the document. The 1.x files' ``$id``s
    are dropped: every nested one is a JSON-pointer fragment naming where it stands (or sits
    beside a ``$ref``, which draft 6/7 ignores), and the root's is a remote URL fastjsonschema
    would try to fetch. Formats are not checked and defaults not filled in, as jsonschema's
    validator (no format checker) does."""
    import fastjsonschema

    document = schema(family, endpoint)
    root = _without_ids(validator(family, endpoint).schema)
    if "definitions" in document:
        root["definitions"] = _without_ids(document["definitions"])
    root["$schema"] = document["$schema"]
    check = fastjsonschema.compile(root, handlers={}, formats={}, use_default=False, use_formats=False)

    def accepts(record) -> bool:
        try:
            check(record)
        except fastjsonschema.JsonSchemaValueException:
            return False
        return True

    return accepts


def schema_error(record, family: str, endpoint: str) -> tuple[str, str] | None:
    """``(reason, kind)`` for a record that breaks its schema (kind: the reason without values),
    or None."""
    import jsonschema

    if not isinstance(record, dict):
        return f"schema: (record): not a JSON object but {type(record).__name__}", "schema: (record): type"
    if compiled_check(family, endpoint)(record):
        return None
    check = validator(family, endpoint)
    if check.is_valid(record):
        return None
    error = jsonschema.exceptions.best_match(check.iter_errors(record))
    path = "/".join(str(p) for p in error.absolute_path) or "(record)"
    message = error.message
    if error.validator in ("oneOf", "anyOf") and isinstance(error.schema, dict) and error.schema.get("description"):
        # the message would repeat the whole record: the rule's own description says more
        message = f"breaks the rule {error.schema['description']!r}"
    message = message if len(message) <= 300 else message[:297] + "..."
    kind_path = re.sub(r"/\d+(?=/|$)", "/*", path)
    return f"schema: {path}: {message}", f"schema: {kind_path}: {error.validator}"
