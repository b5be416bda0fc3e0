"""Seattle SPD crime offenses (Socrata SODA dataset ``tazs-3rd5`` on data.seattle.gov).

Owns: the SODA client (metadata, paging), schema detection (A: the original export columns; B: the
NIBRS republication), the mapping of both onto one canonical contract, and the block's validation.

Block: the offenses whose report time falls in the calendar month, in Pacific local wall time
(Socrata "floating timestamps" carry no zone; Seattle publishes them in America/Los_Angeles). The
filter is ``report >= 'YYYY-MM-01T00:00:00.000' AND report < '<next month>-01T00:00:00.000'``, so the
first instant (00:00:00.000 on the 1st) is in and the last (23:59:59.999 on the last day) is in, with
no gap or overlap between neighbouring months. Report time, not offense time: offense dates reach
back to 1908 and are unreliable, while every offense has exactly one report time, so each lands once.

Canonical contract (the lake's columns): see ``docs/lake_contract_seattle_crime.md``. The natural
key is ``offense_id``; duplicate keys within a block keep the latest report time.

Watermark: the dataset's ``rowsUpdatedAt`` (epoch seconds) from ``/api/views/<id>.json``.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone

import orjson
import pyarrow as pa
import pyarrow.compute as pc

from civic_pipelines.http import SourceHTTPError, get_bytes
from civic_pipelines.jsonarrow import JsonPage, exact_table
from civic_pipelines.months import month_bounds
from civic_pipelines.sources.base import BlockData, SchemaDriftError, SourceSpec

log = logging.getLogger(__name__)

DATASET_ID = "tazs-3rd5"
PAGE_SIZE = 50_000

SPEC = SourceSpec(
    name="seattle_crime",
    title="Seattle police crime offenses",
    publisher="Seattle Police Department, Socrata SODA dataset tazs-3rd5 on data.seattle.gov",
    cron="0 0 1 * *",
    cadence="monthly",
    first_month="2008-01",
    conn_id="civic_seattle_crime",
    default_base_url="https://data.seattle.gov",
    natural_key="offense_id",
    description="SPD crime data, one row per offense, 2008 to present; republished in NIBRS form (schema B).",
    tags=("crime", "socrata", "seattle"),
    dbt_tag="seattle_crime",
)

# canonical name -> (schema A wire name, schema B wire name); None where a schema lacks the field.
# Names are mapped explicitly: the B CSV header "NIBRS Group AB" does not snake_case to the API name.
FIELDS: dict[str, tuple[str | None, str | None]] = {
    "offense_id": ("offense_id", "offense_id"),
    "report_number": ("report_number", "report_number"),
    "report_datetime": ("report_datetime", "report_date_time"),
    "offense_start_datetime": ("offense_start_datetime", "offense_date"),
    "offense_end_datetime": ("offense_end_datetime", None),
    "group_a_b": ("group_a_b", "nibrs_group_a_b"),
    "crime_against_category": ("crime_against_category", "nibrs_crime_against_category"),
    "offense_parent_group": ("offense_parent_group", "offense_sub_category"),
    "offense": ("offense", "nibrs_offense_code_description"),
    "offense_code": ("offense_code", "nibrs_offense_code"),
    "offense_category": (None, "offense_category"),
    "shooting_type_group": (None, "shooting_type_group"),
    "precinct": ("precinct", "precinct"),
    "sector": ("sector", "sector"),
    "beat": ("beat", "beat"),
    "neighborhood": ("mcpp", "neighborhood"),
    "reporting_area": (None, "reporting_area"),
    "census_block_2020": (None, "census_block_2020"),
    "block_address": ("_100_block_address", "block_address"),
    "longitude": ("longitude", "longitude"),
    "latitude": ("latitude", "latitude"),
}
TIMESTAMP_FIELDS = ("report_datetime", "offense_start_datetime", "offense_end_datetime")
REQUIRED = ("offense_id", "report_datetime")
SCHEMA_INDEX = {"A": 0, "B": 1}

DATA_SCHEMA = pa.schema(
    [("offense_id", pa.int64()), ("report_number", pa.string())]
    + [(name, pa.timestamp("ms")) for name in TIMESTAMP_FIELDS]
    + [
        (name, pa.string())
        for name in FIELDS
        if name not in ("offense_id", "report_number", "longitude", "latitude") and name not in TIMESTAMP_FIELDS
    ]
    + [
        ("longitude", pa.float64()),
        ("latitude", pa.float64()),
        ("source_schema", pa.string()),
        ("_block_month", pa.string()),
        ("_landed_at", pa.timestamp("us", tz="UTC")),
    ]
)
QUARANTINE_SCHEMA = pa.schema(
    [(name, pa.string()) for name in FIELDS]
    + [
        ("source_schema", pa.string()),
        ("_reason", pa.string()),
        ("_block_month", pa.string()),
        ("_landed_at", pa.timestamp("us", tz="UTC")),
    ]
)


def wire_names(schema: str) -> set[str]:
    index = SCHEMA_INDEX[schema]
    return {names[index] for names in FIELDS.values() if names[index]}


# ---------------------------------------------------------------- metadata, schema and watermark


def fetch_metadata(session, base_url: str) -> dict:
    return orjson.loads(get_bytes(session, f"{base_url}/api/views/{DATASET_ID}.json"))


def detect_schema(column_names: set[str]) -> str:
    """A or B, from the dataset's column metadata (schema B renamed the report time field)."""
    if "report_date_time" in column_names:
        return "B"
    if "report_datetime" in column_names:
        return "A"
    raise SchemaDriftError(
        "required field gone: neither report_datetime (schema A) nor report_date_time (schema B) is among the "
        f"dataset's columns ({', '.join(sorted(column_names)) or 'none'})"
    )


def schema_drift(schema: str, column_names: set[str]) -> dict:
    known = wire_names(schema)
    drift = {"new_fields": sorted(column_names - known), "missing_fields": sorted(known - column_names)}
    index = SCHEMA_INDEX[schema]
    gone = [FIELDS[name][index] for name in REQUIRED if FIELDS[name][index] not in column_names]
    if gone:
        raise SchemaDriftError(f"required field gone from schema {schema}: {', '.join(gone)}")
    if drift["new_fields"] or drift["missing_fields"]:
        log.warning("seattle_crime schema drift (schema %s): %s", schema, drift)
    return drift


def watermark_from(metadata: dict) -> str:
    value = metadata.get("rowsUpdatedAt")
    if value is None:
        raise SourceHTTPError("dataset metadata has no rowsUpdatedAt")
    return str(int(value))


def auth_headers(connection) -> dict:
    # The app token is optional; as a header it never shows up in a logged URL.
    return {"X-App-Token": connection.password} if connection.password else {}


# ---------------------------------------------------------------- paging


def page_params(schema: str, month: str, offset: int, limit: int = PAGE_SIZE) -> dict:
    report_field = FIELDS["report_datetime"][SCHEMA_INDEX[schema]]
    start, end = month_bounds(month)
    return {
        "$where": f"{report_field} >= '{start}' AND {report_field} < '{end}'",
        "$order": ":id",
        "$limit": str(limit),
        "$offset": str(offset),
    }


def iter_pages(session, base_url: str, schema: str, month: str, page_size: int = PAGE_SIZE, sizes: list | None = None):
    """Yield each page as a :class:`JsonPage`; stop on a short page (SODA has no next link).

    The next page downloads in a background thread while the caller parses the current one
    (Arrow's parser releases the GIL). It is requested only when the current page is full, so
    the requests are exactly the pages of the month. ``sizes`` collects response sizes in bytes.
    """
    url = f"{base_url}/resource/{DATASET_ID}.json"

    def fetch(offset: int) -> bytes:
        return get_bytes(session, url, params=page_params(schema, month, offset, page_size))

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="soda-prefetch") as pool:
        offset, pending = 0, pool.submit(fetch, 0)
        while pending is not None:
            try:
                page = JsonPage(pending.result())
            except ValueError as error:
                raise SourceHTTPError(f"{url} offset {offset}: {error}") from None
            if sizes is not None:
                sizes.append(len(page.body))
            pending = pool.submit(fetch, offset + page_size) if page.rows >= page_size else None
            yield page
            if pending is None and (page.parsed_rows or 0) >= page_size:
                pending = pool.submit(fetch, offset + page_size)  # the hint undercounted: the page was full
            offset += page_size


# ---------------------------------------------------------------- parse and validate (columnar)


def _canonical(wire_table: pa.Table, schema: str) -> pa.Table:
    """Wire-named string columns to the canonical names, with nulls for fields the schema lacks."""
    index = SCHEMA_INDEX[schema]
    arrays = [
        wire_table[wire[index]] if wire[index] else pa.nulls(wire_table.num_rows, pa.string())
        for wire in FIELDS.values()
    ]
    return pa.Table.from_arrays(arrays, names=list(FIELDS))


def page_to_columns(page: JsonPage, schema: str) -> pa.Table:
    return _canonical(page.to_table(sorted(wire_names(schema))), schema)


def rows_to_columns(rows: list[dict], schema: str) -> pa.Table:
    """Wire rows already decoded (all strings, nulls omitted) to canonical string columns."""
    return _canonical(exact_table(rows, sorted(wire_names(schema))), schema)


def _parse_timestamps(values: pa.ChunkedArray) -> pa.ChunkedArray:
    """Floating timestamps to timestamp[ms]; anything unparseable becomes null."""
    try:
        return pc.cast(values, pa.timestamp("ms"))
    except pa.ArrowInvalid:
        head = pc.utf8_slice_codeunits(values, 0, 19)
        parsed = pc.strptime(head, format="%Y-%m-%dT%H:%M:%S", unit="ms", error_is_null=True)
        # strptime rolls impossible dates over (Feb 30 -> Mar 1): only a round trip proves a date real.
        round_trip = pc.equal(pc.strftime(pc.cast(parsed, pa.timestamp("s")), format="%Y-%m-%dT%H:%M:%S"), head)
        tail_ok = pc.match_substring_regex(pc.utf8_slice_codeunits(values, 19, 40), r"^(\.[0-9]{1,9})?$")
        valid = pc.fill_null(pc.and_(round_trip, tail_ok), False)
        return pc.if_else(valid, parsed, pa.scalar(None, pa.timestamp("ms")))


def _parse_coordinate(values: pa.ChunkedArray) -> pa.ChunkedArray:
    numeric = pc.fill_null(pc.match_substring_regex(values, r"^\s*-?[0-9]+(\.[0-9]+)?\s*$"), False)
    cleaned = pc.if_else(numeric, values, pa.scalar(None, pa.string()))
    return pc.cast(pc.utf8_trim_whitespace(cleaned), pa.float64())


def validate(raw: pa.Table, schema: str, month: str, landed_at: datetime) -> tuple[pa.Table, pa.Table, dict]:
    """Split raw string columns into typed good rows and quarantined rows (with the reason)."""
    offense_id_raw = raw["offense_id"]
    id_ok = pc.fill_null(pc.match_substring_regex(offense_id_raw, r"^[0-9]{1,18}$"), False)
    timestamps = {name: _parse_timestamps(raw[name]) for name in TIMESTAMP_FIELDS}
    report = timestamps["report_datetime"]
    start, end = month_bounds(month)
    start_ts = pa.scalar(datetime.fromisoformat(start), pa.timestamp("ms"))
    end_ts = pa.scalar(datetime.fromisoformat(end), pa.timestamp("ms"))
    in_month = pc.fill_null(pc.and_(pc.greater_equal(report, start_ts), pc.less(report, end_ts)), False)

    # The first failing rule names the reason.
    reason = pc.if_else(
        pc.is_null(offense_id_raw),
        "missing offense_id",
        pc.if_else(
            pc.invert(id_ok),
            "offense_id is not an integer",
            pc.if_else(
                pc.is_null(raw["report_datetime"]),
                "missing report_datetime",
                pc.if_else(
                    pc.is_null(report),
                    "unparseable report_datetime",
                    pc.if_else(in_month, pa.scalar(None, pa.string()), f"report_datetime outside block {month}"),
                ),
            ),
        ),
    )
    bad = pc.is_valid(reason)
    good_mask = pc.invert(bad)
    n_good = pc.sum(good_mask).as_py() or 0
    n_raw = raw.num_rows

    landed = pa.scalar(landed_at, pa.timestamp("us", tz="UTC"))
    longitude = _parse_coordinate(raw["longitude"])
    latitude = _parse_coordinate(raw["latitude"])
    # 0/0 is how schema A withholds a location: missing, not a point in the Atlantic.
    withheld = pc.fill_null(pc.and_(pc.equal(longitude, 0.0), pc.equal(latitude, 0.0)), False)
    longitude = pc.if_else(withheld, pa.scalar(None, pa.float64()), longitude)
    latitude = pc.if_else(withheld, pa.scalar(None, pa.float64()), latitude)

    columns = {}
    for field in DATA_SCHEMA:
        name = field.name
        if name == "offense_id":
            safe = pc.if_else(id_ok, offense_id_raw, "0")
            column = pc.cast(safe, pa.int64())
        elif name in TIMESTAMP_FIELDS:
            column = timestamps[name]
        elif name == "longitude":
            column = longitude
        elif name == "latitude":
            column = latitude
        elif name == "source_schema":
            column = pa.array([schema] * n_raw, pa.string())
        elif name == "_block_month":
            column = pa.array([month] * n_raw, pa.string())
        elif name == "_landed_at":
            column = pa.array([landed.as_py()] * n_raw, pa.timestamp("us", tz="UTC"))
        else:
            column = raw[name]
        columns[name] = column
    typed = pa.table(columns, schema=DATA_SCHEMA) if n_raw else DATA_SCHEMA.empty_table()
    good = typed.filter(good_mask) if n_raw else typed

    quarantine = raw.filter(bad).append_column("source_schema", pa.array([schema] * (n_raw - n_good), pa.string()))
    quarantine = quarantine.append_column("_reason", pc.filter(reason, bad))
    quarantine = quarantine.append_column("_block_month", pa.array([month] * quarantine.num_rows, pa.string()))
    quarantine = quarantine.append_column(
        "_landed_at", pa.array([landed.as_py()] * quarantine.num_rows, pa.timestamp("us", tz="UTC"))
    )
    reasons = {}
    if quarantine.num_rows:
        for item in pc.value_counts(quarantine["_reason"]).to_pylist():
            reasons[item["values"]] = item["counts"]
    return good, quarantine.cast(QUARANTINE_SCHEMA), {
        "quarantine_reasons": reasons,
        "withheld_locations": pc.sum(withheld).as_py() or 0,
    }


def collapse_duplicates(table: pa.Table) -> tuple[pa.Table, int]:
    """One row per offense_id: the one with the latest report time (then the last seen)."""
    if table.num_rows == 0 or pc.count_distinct(table["offense_id"]).as_py() == table.num_rows:
        return table, 0
    import duckdb

    ordered = table.append_column("_seen", pa.array(range(table.num_rows), pa.int64()))
    with duckdb.connect() as con:
        con.register("block", ordered)
        deduped = con.sql(
            "SELECT * EXCLUDE (_seen) FROM block "
            "QUALIFY row_number() OVER (PARTITION BY offense_id ORDER BY report_datetime DESC, _seen DESC) = 1"
        ).to_arrow_table()
    return deduped.cast(table.schema), table.num_rows - deduped.num_rows


def sort_by_key(table: pa.Table) -> pa.Table:
    """Rows in offense_id order, so the same content always gives the same checksum (pages
    usually arrive in that order already, and checking is cheaper than sorting)."""
    ids = table["offense_id"]
    if table.num_rows < 2 or pc.all(pc.greater_equal(ids[1:], ids[:-1])).as_py():
        return table
    return table.sort_by("offense_id")


# ---------------------------------------------------------------- the block


def probe(session, connection) -> dict:
    """What the extractor needs before fetching: the watermark and the schema (one metadata call)."""
    metadata = fetch_metadata(session, connection.base_url)
    column_names = {column.get("fieldName") for column in metadata.get("columns", []) if column.get("fieldName")}
    schema = detect_schema(column_names)
    return {"watermark": watermark_from(metadata), "schema": schema, "drift": schema_drift(schema, column_names)}


def extract_block(session, connection, month: str, probed: dict, landed_at: datetime | None = None) -> BlockData:
    landed_at = landed_at or datetime.now(timezone.utc)
    schema = probed["schema"]
    goods, quarantines, reasons, withheld, fetched, pages, sizes = [], [], {}, 0, 0, 0, []
    for page in iter_pages(session, connection.base_url, schema, month, sizes=sizes):
        raw = page_to_columns(page, schema)
        pages += 1
        fetched += raw.num_rows
        unknown = page.first_keys() - wire_names(schema) - {":id", ":created_at", ":updated_at"} if pages == 1 else set()
        if unknown:
            probed["drift"]["new_fields"] = sorted(set(probed["drift"]["new_fields"]) | unknown)
        good, quarantine, stats = validate(raw, schema, month, landed_at)
        goods.append(good)
        if quarantine.num_rows:
            quarantines.append(quarantine)
        for reason, count in stats["quarantine_reasons"].items():
            reasons[reason] = reasons.get(reason, 0) + count
        withheld += stats["withheld_locations"]
    data = pa.concat_tables(goods) if goods else DATA_SCHEMA.empty_table()
    data, collapsed = collapse_duplicates(data)
    data = sort_by_key(data)
    quarantine = pa.concat_tables(quarantines) if quarantines else None
    return BlockData(
        data=data,
        quarantine=quarantine,
        stats={
            "schema": schema,
            "pages": pages,
            "fetched_rows": fetched,
            "fetched_bytes": sum(sizes),
            "duplicates_collapsed": collapsed,
            "quarantine_reasons": reasons,
            "withheld_locations": withheld,
            "drift": probed["drift"],
        },
    )
