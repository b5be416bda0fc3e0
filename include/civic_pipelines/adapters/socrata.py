"""Socrata SODA 2.0 datasets, configured by a dataset file (``adapter = "socrata"``).

A block is the rows whose ``date_field`` (a Socrata floating timestamp: publisher wall time, no
zone) falls in the calendar month: ``f >= 'YYYY-MM-01T00:00:00.000' AND f < '<next>-01T00:00:00.000'``,
so neighbouring months neither overlap nor leave a gap. Pages are ``$order=:id`` with
``$limit``/``$offset``; SODA has no next link, so a short page ends the block.

Watermark: the dataset's ``rowsUpdatedAt`` (epoch seconds) from ``/api/views/<id>.json``.

Some publishers re-issue a dataset under new column names (Seattle's NIBRS republication): a
dataset file may list *variants*, each detected by a column present in the metadata, and give each
field's wire name per variant; every variant lands in the same lake columns.

The dataset file's ``[adapter]`` table::

    dataset_id = "tazs-3rd5"
    date_field = "report_datetime"      # lake name of the field that assigns a row to its month
    key = "offense_id"                  # lake name of the natural key (int64 or string)
    latest_field = "report_datetime"    # which copy wins when a key repeats within a block
    page_size = 50000                   # SODA 2.0's $limit maximum
    variant_column = "source_schema"    # optional lake column naming the variant
    withheld_point = { x = "longitude", y = "latitude" }  # optional: 0/0 means "withheld"
    variants = [{ name = "B", detect = "report_date_time" }, { name = "A", detect = "report_datetime" }]
    fields = [{ source = "offense_id", name = "offense_id", type = "int64", required = true },
              { source = { A = "report_datetime", B = "report_date_time" }, name = "report_datetime", ... }]

Rules, in order (the first failing rule names the quarantine reason): a required field missing
(``missing <f>``), a required field that does not parse (``<f> is not an integer`` /
``unparseable <f>``), the date field outside the block (``<f> outside block YYYY-MM``). Optional
fields that do not parse land as null and are counted (``nulled_values``).

**Each page's own schema.** SODA names every page's columns and their types in ``X-SODA2-Fields`` /
``X-SODA2-Types``. A JSON row omits its null fields, so only these headers tell "null on every
row" from "gone": a required field missing from a page's fields fails the block
(:class:`SchemaDriftError`, the previous landing stays), an optional one is added to the drift's
``missing_fields`` (it lands as null); columns the contract lacks go to ``new_fields`` and a
declared type other than the contract's to ``changed_types`` (values are still parsed, and
coerced: SODA sends every value as text), whichever page they appear on.

**Credentials.** A 401/403 from SODA (an app token it does not accept: ``permission_denied``,
``Invalid app_token specified``) fails the block with a message that names the connection; the
token is never retried without, nor printed.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.compute as pc

from civic_pipelines.adapters import adapter_config_error as _config_error
from civic_pipelines.core import contract
from civic_pipelines.http import SourceHTTPError, get_bytes
from civic_pipelines.jsonarrow import JsonPage, exact_table
from civic_pipelines.months import month_bounds
from civic_pipelines.prefetch import prefetch_pool
from civic_pipelines.sources.base import BlockData, SchemaDriftError, SourceSpec

log = logging.getLogger(__name__)

MAX_PAGE_SIZE = 50_000  # SODA 2.0 refuses a larger $limit
SYSTEM_FIELDS = {":id", ":created_at", ":updated_at"}
ARROW_TYPES = contract.arrow_types(pa.timestamp("ms"))  # floating: the publisher's wall time, as published
# What the dataset's column metadata calls each lake type (for the replay server's /api/views).
SODA_TYPES = {"string": "text", "int64": "number", "int32": "number", "float64": "number", "timestamp": "calendar_date"}
# What X-SODA2-Types calls each lake type on a data page.
SODA2_TYPES = {
    "string": "text",
    "int64": "number",
    "int32": "number",
    "float64": "number",
    "timestamp": "floating_timestamp",
}
_INT_RE = r"^-?[0-9]{1,18}$"
_FLOAT_RE = r"^\s*[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?\s*$"
DEFAULT_VARIANT = "default"


class Field:
    """One lake column: its wire name in each variant (None where the variant lacks it)."""

    def __init__(self, table: dict, path: Path, variants: list[str]) -> None:
        unknown = set(table) - {"source", "name", "type", "required", "description"}
        if unknown:
            raise _config_error(path, f"field {table.get('name')!r}: unknown key(s) {sorted(unknown)}")
        try:
            source, self.name, self.type = table["source"], str(table["name"]), str(table["type"])
        except KeyError as missing:
            raise _config_error(path, f"every field needs source, name and type; {table} lacks {missing}") from None
        if self.type not in ARROW_TYPES:
            raise _config_error(
                path, f"field {self.name}: type must be one of {sorted(ARROW_TYPES)}, not {self.type!r}"
            )
        if isinstance(source, str):
            self.wire = {variant: source for variant in variants}
        elif isinstance(source, dict):
            strange = set(source) - set(variants)
            if strange:
                raise _config_error(path, f"field {self.name}: source names unknown variant(s) {sorted(strange)}")
            self.wire = {variant: (str(source[variant]) if source.get(variant) else None) for variant in variants}
        else:
            raise _config_error(path, f"field {self.name}: source must be a wire name or a table variant -> wire name")
        self.required = bool(table.get("required", False))
        if self.required and None in self.wire.values():
            raise _config_error(path, f"field {self.name} is required, so every variant needs its wire name")
        self.arrow_type = ARROW_TYPES[self.type]
        self.soda_type = SODA_TYPES[self.type]


class SocrataDatasetSource:
    """A source (``SPEC``, ``auth_headers``, ``probe``, ``extract_block``) over one SODA dataset."""

    def __init__(self, spec: SourceSpec, config: dict, path: Path) -> None:
        known = {
            "dataset_id",
            "date_field",
            "key",
            "latest_field",
            "page_size",
            "variant_column",
            "withheld_point",
            "variants",
            "fields",
            "watermark",
        }
        unknown = set(config) - known
        if unknown:
            raise _config_error(path, f"unknown key(s) {sorted(unknown)}; known: {sorted(known)}")
        self.SPEC = spec
        self.path = path
        try:
            self.dataset_id = str(config["dataset_id"])
        except KeyError:
            raise _config_error(path, "dataset_id is required") from None
        if config.get("watermark", "rowsUpdatedAt") != "rowsUpdatedAt":
            raise _config_error(path, "watermark must be rowsUpdatedAt (the only change marker SODA publishes)")
        self.page_size = int(config.get("page_size", MAX_PAGE_SIZE))
        if not 0 < self.page_size <= MAX_PAGE_SIZE:
            raise _config_error(path, f"page_size must be 1..{MAX_PAGE_SIZE}, not {self.page_size}")

        variants = config.get("variants") or []
        self.detectors = []  # (variant, column that proves it), tried in order
        for item in variants:
            if not isinstance(item, dict) or set(item) != {"name", "detect"}:
                raise _config_error(path, f"each variant is {{ name = ..., detect = <column> }}, not {item!r}")
            self.detectors.append((str(item["name"]), str(item["detect"])))
        self.variants = [name for name, _ in self.detectors] or [DEFAULT_VARIANT]
        if len(set(self.variants)) != len(self.variants):
            raise _config_error(path, "variant names must be unique")

        self.fields = [Field(table, path, self.variants) for table in config.get("fields") or []]
        if not self.fields:
            raise _config_error(path, "fields is empty")
        self.by_name = {field.name: field for field in self.fields}
        if len(self.by_name) != len(self.fields):
            raise _config_error(path, "two fields share a lake name")
        self.date_field = self._field(config.get("date_field"), "date_field", "timestamp")
        self.key = self._field(config.get("key"), "key", None)
        if self.key.type not in ("int64", "string") or not self.key.required:
            raise _config_error(path, "key must name a required int64 or string field")
        self.latest_field = self._field(config.get("latest_field", self.date_field.name), "latest_field", None)
        if not self.date_field.required:
            raise _config_error(path, "date_field must be required: a row without it belongs to no block")
        self.variant_column = config.get("variant_column")
        point = config.get("withheld_point")
        self.withheld_point = None
        if point is not None:
            if set(point) != {"x", "y"}:
                raise _config_error(path, "withheld_point is { x = <field>, y = <field> }")
            self.withheld_point = (
                self._field(point["x"], "withheld_point.x", "float64").name,
                self._field(point["y"], "withheld_point.y", "float64").name,
            )

        variant = [(self.variant_column, pa.string())] if self.variant_column else []
        self.DATA_SCHEMA = contract.data_schema([(f.name, f.arrow_type) for f in self.fields] + variant)
        self.QUARANTINE_SCHEMA = contract.quarantine_schema([(f.name, pa.string()) for f in self.fields] + variant)

    def _field(self, name, what: str, kind: str | None) -> Field:
        field = self.by_name.get(name)
        if field is None:
            raise _config_error(self.path, f"{what} {name!r} is not among the fields")
        if kind and field.type != kind:
            raise _config_error(self.path, f"{what} {name!r} must be a {kind} field, not {field.type}")
        return field

    def __repr__(self) -> str:
        return f"SocrataDatasetSource({self.SPEC.name}: {self.dataset_id})"

    # ------------------------------------------------------------ metadata, variant, watermark

    def auth_headers(self, connection) -> dict:
        # The app token is optional; as a header it never shows up in a logged URL.
        return {"X-App-Token": connection.password} if connection.password else {}

    def wire_names(self, schema: str) -> set[str]:
        return {field.wire[schema] for field in self.fields if field.wire[schema]}

    def detect_schema(self, column_names: set[str]) -> str:
        """The variant whose detecting column the dataset has (the first that matches)."""
        if not self.detectors:
            return DEFAULT_VARIANT
        for name, column in self.detectors:
            if column in column_names:
                return name
        tried = ", ".join(f"{column} (schema {name})" for name, column in self.detectors)
        raise SchemaDriftError(
            f"required field gone: none of {tried} is among the dataset's columns "
            f"({', '.join(sorted(column_names)) or 'none'})"
        )

    def schema_drift(self, schema: str, column_names: set[str]) -> dict:
        known = self.wire_names(schema)
        gone = [f.wire[schema] for f in self.fields if f.required and f.wire[schema] not in column_names]
        if gone:
            raise SchemaDriftError(f"required field gone from schema {schema}: {', '.join(gone)}")
        drift = {"new_fields": sorted(column_names - known), "missing_fields": sorted(known - column_names)}
        if drift["new_fields"] or drift["missing_fields"]:
            log.warning("%s schema drift (schema %s): %s", self.SPEC.name, schema, drift)
        return drift

    def probe(
        self, session, connection, month: str | None = None, part: str | None = None, previous: dict | None = None
    ) -> dict:
        """The watermark and the variant, from one metadata call."""
        url = f"{connection.base_url}/api/views/{self.dataset_id}.json"
        try:
            metadata = orjson.loads(get_bytes(session, url))
        except SourceHTTPError as error:
            if error.status in (401, 403):
                raise self._refused(error, connection) from None
            raise
        except orjson.JSONDecodeError as error:
            raise SourceHTTPError(f"{url}: metadata is not JSON ({error})") from None
        column_names = {c.get("fieldName") for c in metadata.get("columns", []) if c.get("fieldName")}
        schema = self.detect_schema(column_names)
        if metadata.get("rowsUpdatedAt") is None:
            raise SourceHTTPError(f"{url}: dataset metadata has no rowsUpdatedAt")
        return {
            "watermark": str(int(metadata["rowsUpdatedAt"])),
            "schema": schema,
            "drift": self.schema_drift(schema, column_names),
        }

    # ------------------------------------------------------------ paging

    def page_params(self, schema: str, month: str, offset: int, limit: int | None = None) -> dict:
        wire = self.date_field.wire[schema]
        start, end = month_bounds(month)
        return {
            "$where": f"{wire} >= '{start}' AND {wire} < '{end}'",
            "$order": ":id",
            "$limit": str(limit or self.page_size),
            "$offset": str(offset),
        }

    def iter_pages(
        self, session, base_url: str, schema: str, month: str, page_size: int | None = None, sizes: list | None = None
    ):
        """Yield each page as a :class:`JsonPage`; stop on a short page.

        The next page downloads in a background thread while the caller parses the current one
        (Arrow's parser releases the GIL). It is requested only when the current page is full, so
        the requests are exactly the pages of the month. ``sizes`` collects response sizes in bytes.
        """
        page_size = page_size or self.page_size
        url = f"{base_url}/resource/{self.dataset_id}.json"

        def fetch(offset: int) -> tuple[bytes, dict]:
            headers: dict = {}
            body = get_bytes(
                session, url, params=self.page_params(schema, month, offset, page_size), headers_out=headers
            )
            return body, headers

        with prefetch_pool("soda-prefetch") as pool:
            offset, pending = 0, pool.submit(fetch, 0)
            while pending is not None:
                body, headers = pending.result()
                try:
                    page = JsonPage(body)
                except ValueError as error:
                    raise SourceHTTPError(f"{url} offset {offset}: {error}") from None
                page.headers = headers
                page.offset = offset
                if sizes is not None:
                    sizes.append(page.size)
                pending = pool.submit(fetch, offset + page_size) if page.rows >= page_size else None
                yield page
                if pending is None and (page.parsed_rows or 0) >= page_size:
                    pending = pool.submit(fetch, offset + page_size)  # the hint undercounted: the page was full
                offset += page_size

    # ------------------------------------------------------------ parse and validate (columnar)

    def _canonical(self, wire_table: pa.Table, schema: str) -> pa.Table:
        """Wire-named string columns to lake names, nulls for fields the variant lacks."""
        arrays = [
            wire_table[f.wire[schema]] if f.wire[schema] else pa.nulls(wire_table.num_rows, pa.string())
            for f in self.fields
        ]
        return pa.Table.from_arrays(arrays, names=[f.name for f in self.fields])

    def page_to_columns(self, page: JsonPage, schema: str) -> pa.Table:
        return self._canonical(page.to_table(sorted(self.wire_names(schema))), schema)

    def rows_to_columns(self, rows: list[dict], schema: str) -> pa.Table:
        """Wire rows already decoded (all strings, nulls omitted) to lake-named string columns."""
        return self._canonical(exact_table(rows, sorted(self.wire_names(schema))), schema)

    @staticmethod
    def _parsed(values, field: Field):
        """(typed column with nulls where it does not parse, mask of present-but-unparseable)."""
        if field.type == "string":
            return values, None
        if field.type == "timestamp":
            typed = parse_floating(values)
        else:
            return contract.text_to_numbers(values, field.type, _INT_RE if field.type.startswith("int") else _FLOAT_RE)
        bad = pc.and_(pc.is_valid(values), pc.is_null(typed))
        return typed, bad

    def validate(self, raw: pa.Table, schema: str, month: str, landed_at: datetime) -> tuple[pa.Table, pa.Table, dict]:
        """Split raw string columns into typed good rows and quarantined rows (with the reason)."""
        n_raw = raw.num_rows
        typed, rules, optional_bad = {}, [], {}
        for field in self.fields:
            typed[field.name], bad = self._parsed(raw[field.name], field)
            if bad is not None and not field.required:
                optional_bad[field.name] = bad
            if field.required:
                rules.append((pc.is_null(raw[field.name]), contract.missing(field.name)))
                if bad is not None:
                    what = (
                        f"{field.name} is not an integer"
                        if field.type.startswith("int")
                        else contract.unparseable(field.name)
                    )
                    rules.append((bad, what))
        start, end = month_bounds(month)
        date = typed[self.date_field.name]
        in_month = pc.and_(
            pc.greater_equal(date, pa.scalar(datetime.fromisoformat(start), date.type)),
            pc.less(date, pa.scalar(datetime.fromisoformat(end), date.type)),
        )
        rules.append((pc.invert(pc.fill_null(in_month, False)), contract.outside_block(self.date_field.name, month)))
        reason = contract.first_broken_rule(rules, n_raw)
        bad = pc.is_valid(reason)

        stats: dict = {}
        nulled = {}
        for name, mask in optional_bad.items():
            count = contract.count_true(pc.and_(mask, pc.invert(bad)))
            if count:
                nulled[name] = count
        stats["nulled_values"] = nulled
        if self.withheld_point:
            x_name, y_name = self.withheld_point
            # 0/0 is how publishers withhold a location: missing, not a point in the Atlantic.
            withheld = pc.fill_null(pc.and_(pc.equal(typed[x_name], 0.0), pc.equal(typed[y_name], 0.0)), False)
            for name in self.withheld_point:
                typed[name] = pc.if_else(withheld, pa.scalar(None, pa.float64()), typed[name])
            stats["withheld_locations"] = contract.count_true(pc.and_(withheld, pc.invert(bad)))

        def constant(value, type_) -> pa.Array:
            return pa.array([value] * n_raw, type_)

        columns = dict(typed)
        if self.variant_column:
            columns[self.variant_column] = constant(schema, pa.string())
        columns.update(contract.block_columns(n_raw, month, landed_at))
        good = (
            pa.table(columns, schema=self.DATA_SCHEMA).filter(pc.invert(bad))
            if n_raw
            else self.DATA_SCHEMA.empty_table()
        )

        quarantine = raw.filter(bad)
        n_bad = quarantine.num_rows
        if self.variant_column:
            quarantine = quarantine.append_column(self.variant_column, pa.array([schema] * n_bad, pa.string()))
        quarantine = quarantine.append_column(contract.REASON, pc.filter(reason, bad))
        for name, column in contract.block_columns(n_bad, month, landed_at).items():
            quarantine = quarantine.append_column(name, column)
        stats["quarantine_reasons"] = contract.reason_counts(quarantine[contract.REASON])
        return good, quarantine.cast(self.QUARANTINE_SCHEMA), stats

    def collapse_duplicates(self, table: pa.Table) -> tuple[pa.Table, int]:
        """One row per key: the one with the latest ``latest_field`` (then the last seen)."""
        key = self.key.name
        keys = table[key]
        # unique() where count_distinct() was: the same answer without nulls, half the memory, faster.
        if table.num_rows == 0 or (keys.null_count == 0 and len(pc.unique(keys)) == table.num_rows):
            return table, 0
        import duckdb

        ordered = table.append_column("_seen", pa.array(range(table.num_rows), pa.int64()))
        with duckdb.connect() as con:
            con.register("block", ordered)
            deduped = con.sql(
                f"SELECT * EXCLUDE (_seen) FROM block QUALIFY row_number() OVER "
                f'(PARTITION BY "{key}" ORDER BY "{self.latest_field.name}" DESC NULLS LAST, _seen DESC) = 1'
            ).to_arrow_table()
        return deduped.cast(table.schema), table.num_rows - deduped.num_rows

    def sort_by_key(self, table: pa.Table) -> pa.Table:
        """Rows in key order, so the same content always gives the same checksum (pages usually
        arrive in that order already, and checking is cheaper than sorting)."""
        order = self.key_order(table)
        return table if order is None else table.take(order)

    def key_order(self, table: pa.Table) -> pa.Array | None:
        """The row indices that put the table in key order (stable), or None when it already is."""
        keys = table[self.key.name]
        if table.num_rows < 2 or pc.all(pc.greater_equal(keys[1:], keys[:-1])).as_py():
            return None
        return pc.sort_indices(table, sort_keys=[(self.key.name, "ascending")])

    # ------------------------------------------------------------ the block

    def page_schema(self, page: JsonPage, schema: str, month: str, drift: dict, missing_pages: dict) -> None:
        """Check one page's declared columns (``X-SODA2-Fields``/``-Types``) against the contract:
        a required field gone raises, the rest is recorded in ``drift`` (see the module docstring)."""
        headers = getattr(page, "headers", None) or {}
        try:
            names = orjson.loads(headers["x-soda2-fields"]) if headers.get("x-soda2-fields") else None
            types = orjson.loads(headers["x-soda2-types"]) if headers.get("x-soda2-types") else None
        except orjson.JSONDecodeError:
            names = types = None
        if not isinstance(names, list):
            if page.rows:  # no header (not SODA 2.0?): the first row's keys tell new fields at least
                unknown = page.first_keys() - self.wire_names(schema) - SYSTEM_FIELDS
                drift["new_fields"] = sorted(set(drift["new_fields"]) | unknown)
            return
        present = set(names)
        declared = dict(zip(names, types)) if isinstance(types, list) and len(types) == len(names) else {}
        gone = [f.wire[schema] for f in self.fields if f.required and f.wire[schema] not in present]
        if gone:
            raise SchemaDriftError(
                f"{self.SPEC.name} {month}: required field(s) {', '.join(gone)} gone from the page at offset "
                f"{getattr(page, 'offset', '?')} (X-SODA2-Fields) although the dataset's metadata lists them: "
                "the schema changed while the block was read; nothing landed, the previous landing stays"
            )
        for field in self.fields:
            wire = field.wire[schema]
            if not wire:
                continue
            if wire not in present:
                missing_pages[wire] = missing_pages.get(wire, 0) + 1
                continue
            kind = declared.get(wire)
            if kind and kind != SODA2_TYPES[field.type]:
                drift.setdefault("changed_types", {})[wire] = {"expected": field.type, "declared": kind}
        unknown = present - self.wire_names(schema) - SYSTEM_FIELDS
        if unknown - set(drift["new_fields"]):
            drift["new_fields"] = sorted(set(drift["new_fields"]) | unknown)

    def _refused(self, error: SourceHTTPError, connection) -> SourceHTTPError:
        """A 401/403 as a message that names the connection (never the token)."""
        try:
            message = orjson.loads(error.body).get("message") or ""
        except (orjson.JSONDecodeError, AttributeError, TypeError):
            message = ""
        token = "the app token of" if connection.password else "no app token in"
        return SourceHTTPError(
            f"{self.SPEC.name}: SODA refused the request with {error.status}"
            + (f" ({message})" if message else "")
            + f": check {token} connection {self.SPEC.conn_id} (an app token is optional; a wrong one is refused)",
            error.status,
        )

    def extract_block(
        self, session, connection, month: str, probed: dict, landed_at: datetime | None = None, **_runner_keywords
    ) -> BlockData:
        """One month's block (the runner's keywords beyond ``landed_at`` do not concern this adapter)."""
        landed_at = landed_at or datetime.now(UTC)
        schema = probed["schema"]
        drift = probed["drift"]
        goods, quarantines, reasons, withheld, fetched, pages, sizes = [], [], {}, 0, 0, 0, []
        nulled: dict[str, int] = {}
        missing_pages: dict[str, int] = {}
        try:
            for page in self.iter_pages(session, connection.base_url, schema, month, sizes=sizes):
                self.page_schema(page, schema, month, drift, missing_pages)
                raw = self.page_to_columns(page, schema)
                pages += 1
                fetched += raw.num_rows
                good, quarantine, stats = self.validate(raw, schema, month, landed_at)
                goods.append(good)
                if quarantine.num_rows:
                    quarantines.append(quarantine)
                for reason, count in stats["quarantine_reasons"].items():
                    reasons[reason] = reasons.get(reason, 0) + count
                for name, count in stats["nulled_values"].items():
                    nulled[name] = nulled.get(name, 0) + count
                withheld += stats.get("withheld_locations", 0)
        except SourceHTTPError as error:
            if error.status in (401, 403):
                raise self._refused(error, connection) from None
            raise
        if missing_pages:
            drift["missing_fields"] = sorted(set(drift["missing_fields"]) | set(missing_pages))
            drift["pages_without"] = dict(sorted(missing_pages.items()))
            log.warning(
                "%s %s: field(s) missing from pages (they land as null): %s", self.SPEC.name, month, missing_pages
            )
        data = pa.concat_tables(goods) if goods else self.DATA_SCHEMA.empty_table()
        goods.clear()
        data, collapsed = self.collapse_duplicates(data)
        order = self.key_order(data)
        if order is not None:
            # sort_by_key() column by column: `columns` holds the block's only references, so each
            # unsorted column is freed as its sorted copy replaces it (one column extra, not a block).
            table_schema, columns = data.schema, data.columns
            del data
            for i in range(len(columns)):
                columns[i] = columns[i].take(order)
            data = pa.Table.from_arrays(columns, schema=table_schema)
        stats = {
            "pages": pages,
            "fetched_rows": fetched,
            "fetched_bytes": sum(sizes),
            "duplicates_collapsed": collapsed,
            "quarantine_reasons": reasons,
            "nulled_values": nulled,
            "drift": drift,
        }
        if self.detectors:
            stats = {"schema": schema, **stats}
        if self.withheld_point:
            stats["withheld_locations"] = withheld
        return BlockData(data=data, quarantine=pa.concat_tables(quarantines) if quarantines else None, stats=stats)


def parse_floating(values) -> pa.ChunkedArray:
    """Floating timestamps (``2024-01-31T23:59:59.999``) to timestamp[ms]; anything unparseable
    becomes null."""
    try:
        return pc.cast(values, pa.timestamp("ms"))
    except pa.ArrowInvalid:
        # Some value is not a timestamp: each is parsed on its own (a fraction is accepted, not kept).
        return contract.text_to_timestamps(values, "%Y-%m-%dT%H:%M:%S", 19, unit="ms", keep_fraction=False)
