"""Street Manager's contract: the source's spec, each part's fields, the lake and parse schemas,
the archive errors, and how event types and timestamps are read (see the package docstring)."""

from __future__ import annotations

import re
from functools import cache
from zoneinfo import ZoneInfo

import pyarrow as pa
import pyarrow.compute as pc

from civic_pipelines.core import contract
from civic_pipelines.core.contract import LANDED_TYPE  # noqa: F401 - re-exported for the package
from civic_pipelines.sources import declared

SPEC = declared.STREET_MANAGER_SPEC  # declared with its capabilities in sources/declared.py: parsing reads it there

OBJECT_TYPES = {"permit": "PERMIT", "activity": "ACTIVITY", "section_58": "SECTION_58"}
REFERENCE_FIELDS = {
    "permit": "permit_reference_number",
    "activity": "activity_reference_number",
    "section_58": "section_58_reference_number",
}
COORDINATE_FIELDS = {
    "permit": "works_location_coordinates",
    "activity": "activity_coordinates",
    "section_58": "section_58_coordinates",
}

# The permit's planned and actual times: in its fields in this order, all typed as timestamps.
PERMIT_TIMES = [
    "proposed_start_date",
    "proposed_start_time",
    "proposed_end_date",
    "proposed_end_time",
    "actual_start_date_time",
    "actual_end_date_time",
]
PERMIT_FIELDS = [
    "work_reference_number",
    "permit_reference_number",
    "promoter_swa_code",
    "promoter_organisation",
    "highway_authority",
    "works_location_coordinates",
    "street_name",
    "area_name",
    "work_category",
    "traffic_management_type",
    *PERMIT_TIMES,
    "work_status",
    "usrn",
    "highway_authority_swa_code",
    "work_category_ref",
    "traffic_management_type_ref",
    "work_status_ref",
    "activity_type",
    "is_ttro_required",
    "is_covid_19_response",
    "works_location_type",
    "permit_conditions",
    "road_category",
    "is_traffic_sensitive",
    "is_deemed",
    "permit_status",
    "town",
    "collaborative_working",
    "collaboration_type",
    "collaboration_type_ref",
    "close_footway",
    "close_footway_ref",
    "current_traffic_management_type",
    "current_traffic_management_type_ref",
    "current_traffic_management_update_date",
]
ACTIVITY_FIELDS = [
    "activity_reference_number",
    "usrn",
    "street_name",
    "town",
    "area_name",
    "road_category",
    "activity_coordinates",
    "activity_name",
    "activity_type",
    "activity_type_details",
    "start_date",
    "start_time",
    "end_date",
    "end_time",
    "activity_location_type",
    "activity_location_description",
    "traffic_management_type",
    "traffic_management_required",
    "collaborative_working",
    "cancelled",
    "highway_authority",
    "highway_authority_swa_code",
]
SECTION_58_FIELDS = [
    "section_58_reference_number",
    "section_58_coordinates",
    "section_58_status",
    "start_date",
    "end_date",
    "section_58_duration",
    "section_58_extent",
    "section_58_location_type",
    "status_change_date",
    "highway_authority_swa_code",
    "highway_authority",
    "usrn",
    "street_name",
    "area_name",
    "town",
]
OBJECT_FIELDS = {"permit": PERMIT_FIELDS, "activity": ACTIVITY_FIELDS, "section_58": SECTION_58_FIELDS}
TIMESTAMP_FIELDS = {
    "permit": {*PERMIT_TIMES, "current_traffic_management_update_date"},
    "activity": {"start_date", "start_time", "end_date", "end_time"},
    "section_58": {"start_date", "end_date", "status_change_date"},
}
# A time that may be published bare ("13:50") -> the date field whose UK-local day it belongs to.
BARE_TIME_FIELDS = {
    "permit": {"proposed_start_time": "proposed_start_date", "proposed_end_time": "proposed_end_date"},
    "activity": {},
    "section_58": {},
}
ENVELOPE_FIELDS = [
    "event_reference",
    "event_type",
    "object_data",
    "event_time",
    "object_type",
    "object_reference",
    "version",
]

# The event types seen in or typed by consumers (contract, "Event types"; not an official list).
KNOWN_EVENT_TYPES = frozenset(
    [
        "PERMIT_SUBMITTED",
        "PERMIT_GRANTED",
        "PERMIT_REFUSED",
        "PERMIT_CANCELLED",
        "PERMIT_REVOKED",
        "PERMIT_ALTERATION_SUBMITTED",
        "PERMIT_ALTERATION_GRANTED",
        "WORK_START",
        "WORK_STOP",
        "WORK_START_REVERTED",
        "WORK_STOP_REVERTED",
        "CURRENT_TRAFFIC_MANAGEMENT_UPDATED",
        "ACTIVITY_CREATED",
        "ACTIVITY_UPDATED",
        "ACTIVITY_CANCELLED",
        "SECTION_58_CREATED",
        "SECTION_58_IN_FORCE",
        "SECTION_58_CANCELLED",
        "SECTION_58_CLOSED",
    ]
)
EVENT_TYPE_ALIASES = {"CURRENT_TRAFFIC_MANAGEMENT_TYPE_UPDATED": "CURRENT_TRAFFIC_MANAGEMENT_UPDATED"}

TIMESTAMP = pa.timestamp("ms", tz="UTC")
_LONDON = ZoneInfo("Europe/London")
# OSGB36 / British National Grid -> WGS 84 by EPSG:1314 (Helmert, ~2 m), fixed (see the docstring).
BNG_TO_WGS84 = (
    "+proj=pipeline +step +inv +proj=tmerc +lat_0=49 +lon_0=-2 +k=0.9996012717 +x_0=400000 +y_0=-100000 "
    "+ellps=airy +step +proj=push +v_3 +step +proj=cart +ellps=airy +step +proj=helmert +x=446.448 "
    "+y=-125.157 +z=542.06 +rx=0.15 +ry=0.247 +rz=0.842 +s=-20.489 +convention=position_vector "
    "+step +inv +proj=cart +ellps=WGS84 +step +proj=pop +v_3 +step +proj=unitconvert +xy_in=rad +xy_out=deg"
)


class ArchiveError(RuntimeError):
    """The archive cannot be read whole: the block fails and lands nothing."""


class ArchiveTruncated(ArchiveError):
    """The archive ends before its central directory (published short, or cut in transit)."""


class ArchiveCorrupt(ArchiveError):
    """Bytes that are neither a member nor the central directory, or a member that cannot be delimited."""


class ArchiveChanged(ArchiveError):
    """The archive changed between the HEAD and the GET (or while resuming): run the block again."""


# ---------------------------------------------------------------- schemas


def data_schema(part: str) -> pa.Schema:
    """The lake schema of a part (``data.parquet``)."""
    return _data_schema(part)


@cache
def _data_schema(part: str) -> pa.Schema:
    timestamps = TIMESTAMP_FIELDS[part]
    columns = [
        ("event_reference", pa.int64()),
        ("event_type", pa.string()),
        ("event_type_published", pa.string()),
        ("event_time", TIMESTAMP),
        ("object_type", pa.string()),
        ("object_reference", pa.string()),
        ("version", pa.int32()),
    ]
    columns += [(name, TIMESTAMP if name in timestamps else pa.string()) for name in OBJECT_FIELDS[part]]
    columns += [("longitude", pa.float64()), ("latitude", pa.float64()), ("extras", pa.string())]
    return contract.data_schema(columns)


QUARANTINE_SCHEMA = contract.quarantine_schema([("member", pa.string()), ("raw", pa.string())])


@cache
def _parse_schema(part: str, inferred: frozenset) -> pa.Schema:
    """What pyarrow.json is told: the envelope and object_data, every object field a string,
    except the fields whose type clashed earlier in this archive (left to inference)."""
    envelope = {
        "event_reference": pa.int64(),
        "event_type": pa.string(),
        "event_time": pa.string(),
        "object_type": pa.string(),
        "object_reference": pa.string(),
        "version": pa.int64(),
    }
    object_struct = pa.struct(
        [(name, pa.string()) for name in OBJECT_FIELDS[part] if f"object_data.{name}" not in inferred]
    )
    columns = []
    for name in ENVELOPE_FIELDS:
        if name == "object_data":
            if "object_data" not in inferred:
                columns.append((name, object_struct))
        elif name not in inferred:
            columns.append((name, envelope[name]))
    return pa.schema(columns)


def normalise_event_type(value: str | None) -> str | None:
    """``work-start``, ``Work Start`` and ``WORK_START`` are one type: upper case, runs of
    anything but letters and digits as one underscore; then the known aliases."""
    if value is None:
        return None
    normal = re.sub(r"[^A-Z0-9]+", "_", value.strip().upper()).strip("_")
    return EVENT_TYPE_ALIASES.get(normal, normal)


_ISO = r"^\s*[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]{1,9})?)?(Z|[+-][0-9]{2}:?[0-9]{2})?\s*$"
_HAS_ZONE = r"(Z|[+-][0-9]{2}:?[0-9]{2})\s*$"


def _timestamps(values: pa.Array) -> tuple[pa.Array, pa.Array]:
    """ISO-8601 strings -> ``timestamp[ms, UTC]`` (no zone: UTC) and the mask of values that were
    given but could not be read (null in the result)."""
    n = len(values)
    if values.null_count == n:
        return pa.nulls(n, TIMESTAMP), pa.array([False] * n, pa.bool_())
    try:  # the published form (ISO with Z) in every row: one cast
        return pc.cast(values, TIMESTAMP), pa.array([False] * n, pa.bool_())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    ok = pc.fill_null(pc.match_substring_regex(values, _ISO), False)
    text = pc.utf8_trim_whitespace(values)
    zoned = pc.fill_null(pc.match_substring_regex(text, _HAS_ZONE), True)
    text = pc.if_else(zoned, text, pc.binary_join_element_wise(text, "Z", ""))
    text = pc.if_else(ok, text, pa.scalar(None, pa.string()))
    try:
        typed = pc.cast(text, TIMESTAMP)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        typed = pa.array([_one_timestamp(v) for v in text.to_pylist()], TIMESTAMP)
    unparsed = pc.and_(pc.is_valid(values), pc.is_null(typed))
    return typed, unparsed


def _one_timestamp(value: str | None):
    if value is None:
        return None
    try:
        return pc.cast(pa.array([value]), TIMESTAMP)[0].as_py()
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None  # e.g. 30 February
