"""Socrata SODA 2.0 endpoints for the replay server.

Owns ``GET /resource/<id>.json`` (and ``.csv``), ``GET /api/views/<id>.json`` and the SODA side of
the fault switches: ``malformed_row``, ``duplicate_row``, and, each on the next n data pages,

* ``empty_month``: the page finds no records (``[]``), as a month query does before its rows load;
* ``page_overlap``: offset paging while rows are inserted ahead of the cursor. The page at a
  non-zero ``$offset`` starts :data:`OVERLAP_ROWS` rows earlier, and so does every later page of
  the same query (the insertion stays), until the query starts again at offset 0: the rows at the
  seam come twice, none is lost (the inserted rows themselves are not modelled);
* ``drop_field``: the field (``field``, default the dataset's partition field, i.e. its date)
  is gone from the rows and from ``X-SODA2-Fields`` / ``X-SODA2-Types``;
* ``new_field``: a Socrata computed-region column (:data:`NEW_FIELD`, type ``number``) appears in
  the rows and the headers, as when a publisher turns on georegion computation;
* ``retype_field``: the field (``field``, default the first ``number`` column) is declared
  ``text`` in ``X-SODA2-Types``; its values are the same strings (SODA sends every value as text).

``status_401`` answers as Socrata does for an app token it does not accept: 403
``{"code": "permission_denied", "error": true, "message": "Invalid app_token specified"}``. Datasets plug in as *sources*
(:class:`SeattleSodaSource` today); a source serves records month by month, and the month is taken
from a partition field (the report time), so a query only generates the months its ``$where``
can touch.

Query parameters: ``$select``, ``$where``, ``$order``, ``$limit`` (default 1000, max 50000),
``$offset``, simple equality filters ``?field=value``, ``$$app_token`` (ignored). Other ``$``
parameters (``$q``, ``$group``, ``$having``, ...) answer 400. The SoQL subset is in ``soql.py``.
"""

from __future__ import annotations

import csv
import io
import threading
from collections import OrderedDict
from collections.abc import Iterable
from email.utils import formatdate

import orjson

from civic_pipelines.replay import soql
from civic_pipelines.replay.config_values import late_edit_list
from civic_pipelines.replay.page_overlap import OVERLAP_ROWS, PageOverlap  # noqa: F401 - the docstring links OVERLAP_ROWS
from civic_pipelines.replay.server import Request, Response, check_config_keys, json_response, socrata_error

DEFAULT_LIMIT = 1000
MAX_LIMIT = 50000
_SODA2_TYPE = {
    "calendar_date": "floating_timestamp",
    "number": "number",
    "text": "text",
    "fixed_timestamp": "fixed_timestamp",
}
_MALFORMED = "query.compiler.malformed"
NEW_FIELD = ":@computed_region_replay_2fw8"  # the shape of Socrata's computed region columns


def _soda_fault_answer(name: str, response: Response) -> Response:
    if name == "status_401":  # Socrata refuses an unknown or revoked app token with a 403
        return socrata_error(403, "permission_denied", "Invalid app_token specified")
    return response


def months_touched(first: str, last: str, low: str | None, high: str | None, high_strict: bool) -> list[str]:
    """The months (within first..last) that a partition-field interval from ``field_bounds`` can
    touch; a strict upper bound at a month's first instant excludes that month."""
    from civic_pipelines.months import month_range

    lo_month = max(first, low[:7]) if low is not None else first
    hi_month = min(last, high[:7]) if high is not None else last
    if high is not None and high_strict and high[7:] == "-01T00:00:00.000":
        y, m = int(high[:4]), int(high[5:7])
        hi_month = min(last, f"{y - (m == 1):04d}-{(m - 2) % 12 + 1:02d}")
    if lo_month > hi_month:
        return []
    return month_range(lo_month, hi_month)


class SodaSource:
    """What every SODA source serves and configures alike from its ``dataset`` (which has
    ``rows_updated_at``, ``rows_per_month``, ``columns()`` and ``apply_late_edits(month, n)``).

    A subclass sets ``name`` and ``edited_key``, and gives ``all_months()`` and
    ``configure_dataset(config)``. ``months``: the months served when a query does not narrow
    them (None: all)."""

    def __init__(self, dataset, title: str, months: Iterable[str] | None = None) -> None:
        self.dataset = dataset
        self.dataset_id = dataset.dataset_id
        self.title = title
        self.months = list(months) if months is not None else None

    @property
    def rows_updated_at(self) -> int:
        return self.dataset.rows_updated_at

    def view(self) -> dict:
        return {
            "id": self.dataset_id,
            "name": self.title,
            "rowsUpdatedAt": int(self.dataset.rows_updated_at),
            "columns": self.columns(),
        }

    def columns(self) -> list[dict]:
        return self.dataset.columns()

    def default_months(self) -> list[str]:
        return list(self.months) if self.months is not None else self.all_months()

    # configuration over HTTP: the settings every SODA source has, around its dataset's own
    config_keys = frozenset({"rows_per_month", "late_edits", "months", "rows_updated_at"})
    edited_key: str  # what the late_edits answer calls the rows an edit changed

    def configure(self, config: dict) -> dict:
        check_config_keys(self.name, config, self.config_keys)
        self.configure_dataset(config)
        if "months" in config:
            months = config["months"]
            for month in months or ():
                self.check_month(month)
            self.months = None if months is None else list(months)
        if "rows_updated_at" in config:
            self.dataset.rows_updated_at = int(config["rows_updated_at"])
        result: dict = {}
        if "late_edits" in config:
            result["late_edits"] = [
                {
                    "month": edit["month"],
                    self.edited_key: self.dataset.apply_late_edits(edit["month"], int(edit.get("n", 1))),
                }
                for edit in late_edit_list(config["late_edits"])
            ]
        return {**result, **self.describe()}

    def configure_dataset(self, config: dict) -> None:
        """Apply the dataset's own settings (``rows_per_month`` and any in ``config_keys``)."""
        raise NotImplementedError

    def check_month(self, month: str) -> None:
        """Refuse (ValueError) a month of a ``months`` setting that the dataset cannot serve."""

    def describe(self) -> dict:
        return {
            "dataset_id": self.dataset_id,
            "rows_per_month": self.dataset.rows_per_month,
            "rowsUpdatedAt": self.dataset.rows_updated_at,
            "months": self.months,
        }


class SeattleSodaSource(SodaSource):
    """Adapts a :class:`~civic_pipelines.replay.seattle.SeattleCrimeDataset` to the SODA service."""

    name = "seattle_crime"

    def __init__(self, dataset, months: Iterable[str] | None = None) -> None:
        from civic_pipelines.replay import seattle

        super().__init__(dataset, dataset.name, months)
        self._seattle = seattle
        self._initial = (dataset.schema, dataset.rows_per_month)

    # what the service needs
    @property
    def version(self):
        return (id(self.dataset), self.dataset.version, self.dataset.schema)

    def all_months(self) -> list[str]:
        return self._seattle.all_months()

    def partition_field(self) -> str:
        return self.dataset.report_field

    def months_in(self, low: str | None, low_strict: bool, high: str | None, high_strict: bool) -> list[str]:
        """Months a report-time interval touches, clipped to the dataset's range."""
        return months_touched(self._seattle.FIRST_MONTH, self._seattle.last_month(), low, high, high_strict)

    def records(self, month: str) -> list[tuple[dict, dict]]:
        return self.dataset.records_for_month(month)

    def malformed_rows(self, page: list[dict]) -> list[dict]:
        """Two rows that break the contract, copied from the page's first rows: one without
        offense_id, one whose report time is ``not-a-date`` (with an offense_id no real row has)."""
        report = self.dataset.report_field
        missing_id = dict(page[0])
        missing_id.pop("offense_id", None)
        bad_date = dict(page[1 % len(page)])
        bad_date[report] = "not-a-date"
        if "offense_id" in bad_date:
            bad_date["offense_id"] = "99000000001"
        return [missing_id, bad_date]

    def duplicate_row(self, row: dict) -> dict:
        """The row again, report time one hour later but still inside its month."""
        report = self.dataset.report_field
        dup = dict(row)
        value = row.get(report)
        if value:
            try:
                secs = self._seattle.parse_floating(value)
            except ValueError:
                return dup
            later = self._seattle.fmt_floating(secs + 3600)
            if later[:7] != value[:7]:
                later = value[:11] + "23:59:59.000" if value[11:19] < "23:59:59" else value
            dup[report] = later
        return dup

    config_keys = SodaSource.config_keys | {"schema"}
    edited_key = "offense_ids"

    def configure_dataset(self, config: dict) -> None:
        if "schema" in config:
            self.dataset.set_schema(config["schema"])
        if "rows_per_month" in config:
            self.dataset.set_rows_per_month(config["rows_per_month"])

    def check_month(self, month: str) -> None:
        self._seattle.parse_month(month)

    def describe(self) -> dict:
        return {**super().describe(), "schema": self.dataset.schema, "seed": self.dataset.seed}

    def reset_data(self) -> None:
        schema, rows_per_month = self._initial
        self.dataset.set_schema(schema)
        self.dataset.set_rows_per_month(rows_per_month)


class SodaApi:
    """The SODA service: any number of sources keyed by dataset id."""

    name = "soda"

    def __init__(self, cache_size: int = 32) -> None:
        self.sources: dict[str, object] = {}
        self._cache: OrderedDict = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()
        self._request_counter = 0
        self.page_overlap = PageOverlap()

    def add_source(self, source) -> None:
        self.sources[source.dataset_id] = source

    def add_seattle(self, dataset, months=None) -> SeattleSodaSource:
        source = SeattleSodaSource(dataset, months)
        self.add_source(source)
        return source

    def install(self, server) -> None:
        server.add_route(
            "/resource/", self.handle_resource, faultable=True, processing_body=b"[]", on_fault=_soda_fault_answer
        )
        server.add_route("/api/views/", self.handle_view)
        server.state.add_reset_hook(self.page_overlap.clear)
        for source in self.sources.values():
            server.add_config_handler(source.name, source.configure, source.describe)
            server.add_data_reset_hook(source.reset_data)

    # ------------------------------------------------------------ /api/views/<id>.json

    def handle_view(self, request: Request) -> Response:
        dataset_id = request.path[len("/api/views/") :]
        dataset_id = dataset_id[:-5] if dataset_id.endswith(".json") else dataset_id
        source = self.sources.get(dataset_id)
        if source is None:
            return socrata_error(404, "not_found", f"Cannot find view with id {dataset_id}")
        return json_response(200, source.view(), self._common_headers(source))

    # ------------------------------------------------------------ /resource/<id>.json

    def _common_headers(self, source) -> dict:
        modified = formatdate(source.rows_updated_at, usegmt=True)
        with self._lock:
            self._request_counter += 1
            request_id = f"replay{self._request_counter:012x}"
        return {
            "Last-Modified": modified,
            "X-SODA2-Truth-Last-Modified": modified,
            "X-SODA2-Secondary-Last-Modified": modified,
            "X-SODA2-Data-Out-Of-Date": "false",
            "ETag": f'"{source.dataset_id}-{source.rows_updated_at}-{source.version[1]}-{source.version[2]}"',
            "X-Socrata-RequestId": request_id,
        }

    def handle_resource(self, request: Request) -> Response:
        name = request.path[len("/resource/") :]
        dataset_id, _, extension = name.rpartition(".")
        if extension not in ("json", "csv"):
            dataset_id, extension = name, "json"
        source = self.sources.get(dataset_id)
        if source is None:
            return socrata_error(404, "not_found", f"Cannot find dataset {dataset_id!r}")
        try:
            return self._query(source, request, extension)
        except soql.SoqlError as exc:
            return socrata_error(400, _MALFORMED, str(exc))

    def _query(self, source, request: Request, extension: str) -> Response:
        columns = source.columns()
        data_fields = [c["fieldName"] for c in columns]
        fields = {c["fieldName"]: c["dataTypeName"] for c in columns}
        fields.update(soql.SYSTEM_FIELD_TYPES)

        where_text = order_text = select_text = None
        limit, offset = DEFAULT_LIMIT, 0
        simple: list[tuple[str, str]] = []
        for key, value in request.params:
            if key.startswith("$$"):
                continue  # $$app_token and other $$ options: accepted, ignored
            if key == "$where":
                where_text = value
            elif key == "$order":
                order_text = value
            elif key == "$select":
                select_text = value
            elif key == "$limit":
                limit = _int_param("$limit", value)
                if limit > MAX_LIMIT:
                    raise soql.SoqlError(f"$limit {limit} is above the SODA 2.0 maximum of {MAX_LIMIT}")
            elif key == "$offset":
                offset = _int_param("$offset", value)
            elif key.startswith("$"):
                raise soql.SoqlError(f"unrecognized or unsupported parameter {key}")
            elif key in fields:
                simple.append((key, value))
            else:
                raise soql.SoqlError(f"no such column: {key}")

        where = soql.parse_where(where_text, fields) if where_text is not None else None
        if simple:
            equalities = [("cmp", k, "=", soql.coerce_literal(fields[k], "str", v, k)) for k, v in simple]
            nodes = ([where] if where is not None else []) + equalities
            where = nodes[0] if len(nodes) == 1 else ("and", nodes)
        order = soql.parse_order(order_text, fields) if order_text else []
        select = soql.parse_select(select_text, fields, data_fields) if select_text else None

        # Only the months the $where can touch on the partition field; else the configured months.
        partition = source.partition_field()
        bounds = soql.field_bounds(where, partition) if where is not None else (None, False, None, False)
        if bounds[0] is None and bounds[2] is None:
            months = source.default_months()
        else:
            months = source.months_in(*bounds)
        is_count = select is not None and select[0] == "count"
        key = (source.dataset_id, source.version, tuple(months), where_text, tuple(simple), order_text)
        headers = self._common_headers(source)
        faults = request.state.faults
        if not is_count:
            offset = self.page_overlap.offset(
                (source.dataset_id, where_text, tuple(simple), order_text, select_text), offset, faults
            )
        if not order and not is_count and len(months) > 1 and not self._is_cached(key):
            # Unordered page over many months: generate months only until the page is full.
            page_records = self._lazy_page(source, months, where, fields, offset, limit)
        else:
            matched = self._matched(key, source, months, where, order, fields)
            if is_count:
                alias = select[1]
                headers["X-SODA2-Fields"] = orjson.dumps([alias]).decode()
                headers["X-SODA2-Types"] = orjson.dumps(["number"]).decode()
                rows = [{alias: str(len(matched))}]
                return self._render(rows, [alias], extension, headers, data_page=False)
            page_records = matched[offset : offset + limit]
        if select is None:
            out_fields = data_fields
            types = [fields[f] for f in data_fields]
            rows = [rec[0] for rec in page_records]
        else:
            pairs = select[1]
            out_fields = [out for _src, out in pairs]
            types = [fields[src] for src, _out in pairs]
            rows = []
            for row, system in page_records:
                projected = {}
                for src, out in pairs:
                    value = system.get(src) if src.startswith(":") else row.get(src)
                    if value is not None:
                        projected[out] = value
                rows.append(projected)

        if faults.get("reset_mid_page") == 0:
            rows, out_fields, types = self._field_faults(source, faults, rows, list(out_fields), list(types))
        if rows and faults.get("reset_mid_page") == 0:
            # page-level data faults (skipped when this page is about to be cut anyway)
            if faults.take("malformed_row"):
                rows = list(rows)
                bad = source.malformed_rows(rows)
                step = max(1, len(rows) // (len(bad) + 1))
                for k, row in enumerate(bad):  # spread through the page, deterministically
                    rows.insert(min(len(rows), (k + 1) * step + k), row)
            if faults.take("duplicate_row"):
                rows = list(rows) + [source.duplicate_row(rows[0])]

        headers["X-SODA2-Fields"] = orjson.dumps(out_fields).decode()
        headers["X-SODA2-Types"] = orjson.dumps([_SODA2_TYPE.get(t, t) for t in types]).decode()
        return self._render(rows, out_fields, extension, headers, data_page=True)

    @staticmethod
    def _field_faults(source, faults, rows: list[dict], out_fields: list[str], types: list[str]):
        """``empty_month``, ``drop_field``, ``new_field``, ``retype_field`` on one data page."""
        if faults.take("empty_month"):
            rows = []
        if faults.take("drop_field"):
            name = faults.field or source.partition_field()
            if name in out_fields:
                index = out_fields.index(name)
                del out_fields[index], types[index]
            rows = [{k: v for k, v in row.items() if k != name} for row in rows]
        if faults.take("new_field"):
            out_fields.append(NEW_FIELD)
            types.append("number")
            rows = [{**row, NEW_FIELD: str(1 + i % 7)} for i, row in enumerate(rows)]
        if faults.take("retype_field"):
            name = faults.field or next((f for f, t in zip(out_fields, types) if t == "number"), None)
            if name in out_fields:
                types[out_fields.index(name)] = "text"
        return rows, out_fields, types

    def _is_cached(self, key) -> bool:
        with self._lock:
            return key in self._cache

    @staticmethod
    def _lazy_page(source, months, where, fields, offset: int, limit: int) -> list:
        predicate = soql.compile_where(where, fields) if where is not None else None
        wanted = offset + limit
        found: list = []
        for month in months:
            records = source.records(month)
            found.extend(records if predicate is None else [rec for rec in records if predicate(rec)])
            if len(found) >= wanted:
                break
        return found[offset:wanted]

    def _matched(self, key, source, months, where, order, fields) -> list:
        """Filtered and sorted records for a query, cached per (data version, months, where, order)."""
        with self._lock:
            cached = self._cache.get(key)
            if cached is not None:
                self._cache.move_to_end(key)
                return cached
        records: list = []
        for month in months:
            records.extend(source.records(month))
        if where is not None:
            predicate = soql.compile_where(where, fields)
            records = [rec for rec in records if predicate(rec)]
        if order:
            records = soql.sort_records(records, order, fields)
        with self._lock:
            self._cache[key] = records
            self._cache.move_to_end(key)
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return records

    @staticmethod
    def _render(rows: list[dict], out_fields: list[str], extension: str, headers: dict, data_page: bool) -> Response:
        if extension == "csv":
            buffer = io.StringIO()
            writer = csv.writer(buffer, quoting=csv.QUOTE_ALL, lineterminator="\n")
            writer.writerow(out_fields)
            for row in rows:
                writer.writerow([row.get(f, "") for f in out_fields])
            return Response(
                200, buffer.getvalue().encode(), headers, content_type="text/csv; charset=utf-8", data_page=data_page
            )
        return Response(200, orjson.dumps(rows), headers, data_page=data_page)


def _int_param(name: str, value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise soql.SoqlError(f"{name} must be an integer, not {value!r}") from None
    if number < 0:
        raise soql.SoqlError(f"{name} must not be negative")
    return number
