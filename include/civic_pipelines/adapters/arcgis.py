"""A generic ArcGIS REST feature-layer source, configured by a dataset file's ``[adapter]`` table.

Owns: finding the block's layer, reading its metadata (watermark, page size, fields, schema drift),
paging its ``query`` operation, ArcGIS's error envelope, and turning features into the lake's
typed Arrow columns with quarantine and de-duplication. Nothing here knows a city: field names,
types, renames, the date field, the key and the layer URL all come from the dataset file.

**One layer per year.** Publishers that open a new hosted layer every January (Minneapolis 311)
are described by a URL pattern with ``{year}``. The layer of a block's year is, in this order:
the Airflow Variable named by ``layers_variable`` (a JSON object ``{"2024": "<layer url>"}``, read
from ``AIRFLOW_VAR_<NAME>`` first, as Airflow itself does), the dataset file's ``[adapter.layers]``
table, the ``layer_path`` pattern. A value without a scheme is a path joined to the connection's
base URL, so tests and the demo only swap the connection.

**Watermark.** The year's layer ``editingInfo.<watermark>`` (``lastEditDate`` by default: it moves
on every data or schema edit), epoch ms as a string. It is per layer, so :meth:`probe` needs the
block's month (``run_block`` passes it): an edit anywhere in a year re-checks that year's twelve
blocks, and the extractor keeps the landed data of the months whose content did not change.

**Block and time zone.** A block is the features whose ``date_field`` falls in the calendar month
in **UTC**: ``<date_field> >= DATE 'YYYY-MM-01 00:00:00' AND <date_field> < DATE '<next month>-01
00:00:00'``, so the month's first instant is in, the next month's first instant is out, and
neighbouring blocks neither overlap nor leave a gap. Hosted layers store dates as UTC epoch
milliseconds and read these literals as UTC; a layer that declares another
``dateFieldsTimeReference`` is reported in the block's drift (its literals would be local time).

**Year edges.** Which layer a publisher files a request in is its own rule: by the request's year
in its local time (Minneapolis: America/Chicago, so the evening of 31 December local, the first
hours of 1 January UTC, sits in the previous year's layer), or another. So that no request falls
between blocks whatever that rule, a January block also reads the previous year's layer and a
December block the next year's (``year_edge_layers``, on by default), each with the same UTC-month
``where``: the month's time range bounds what a neighbour can add, and a request the publisher
files by the same date field lands in exactly one block. A neighbour layer that does not exist
(ArcGIS's ``Invalid URL``: the first year, or a next year not yet published) adds nothing and is
named in the watermark, which for an edge month lists every layer read (``<own>|2023=<ms>``), so
an edit in either layer, or the neighbour appearing, re-checks the month. Object ids restart in
each layer, so the rows keep their layer's year (``layer_column``) and a block is keyed by (layer
year, object id): repeats collapse within a layer, never across two.

**Paging.** ``outFields=*``, ``orderByFields=<object id> ASC``, ``resultOffset`` stepping by the
layer's ``maxRecordCount`` (read from the metadata, never assumed) with ``resultRecordCount`` equal
to it, continuing while the answer says ``exceededTransferLimit: true``.

**Errors.** ArcGIS answers most errors with HTTP 200 and ``{"error": {"code", "message",
"details"}}``. That is an error here (:class:`ArcGisServiceError`); one with a 5xx or 429 code
(a busy or timed-out server) is retried ``error_retries`` times with backoff first. HTTP-level
429/5xx are retried by the shared session (:mod:`civic_pipelines.http`). A token error (498
``Invalid token.``, 499 ``Token Required.``) fails with a message naming the connection whose
password holds the token (never the token).

**Each page's own fields.** A query answer lists its ``fields``. A required attribute missing
from a page's fields fails the block (:class:`SchemaDriftError`; the previous landing stays)
rather than quarantining every feature as "missing"; an optional one missing is added to the
drift's ``missing_fields`` (with ``pages_without``) and lands as null; attributes the dataset file
lacks go to ``new_fields`` and a declared type the configured type cannot read losslessly to
``changed_types`` (values are still coerced value by value: ``"123"`` for an integer is 123).

**Rows** (typing, quarantine, one row per key): :mod:`civic_pipelines.adapters.arcgis_rows`.
"""

from __future__ import annotations

import logging
import math
import time
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.compute as pc

from civic_pipelines.adapters import adapter_config_error as _config_error
from civic_pipelines.adapters import adapter_variables, configured_fields, with_variables
from civic_pipelines.adapters.arcgis_rows import (  # noqa: F401 (re-exported: the adapter's names)
    ARROW_TYPES,
    COMPATIBLE_ESRI_TYPES,
    Field,
    features_table,
    one_row_per_key,
    typed_column,
)
from civic_pipelines.core import contract
from civic_pipelines.core.variables import get_variable
from civic_pipelines.http import SourceHTTPError, get_bytes, retry_policy
from civic_pipelines.months import month_bounds, parse_month
from civic_pipelines.prefetch import prefetch_pool
from civic_pipelines.sources.base import BlockData, SchemaDriftError, SourceSpec

log = logging.getLogger(__name__)


class ArcGisServiceError(SourceHTTPError):
    """ArcGIS's error envelope (``{"error": {...}}``, usually on HTTP 200), or an answer that is
    not the JSON document asked for."""

    def __init__(self, message: str, code: int | None = None, url: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.url = url


class ArcGisFeatureLayerSource:
    """A source (``SPEC``, ``auth_headers``, ``probe``, ``extract_block``) over ArcGIS feature layers."""

    def __init__(self, spec: SourceSpec, config: dict, path: Path) -> None:
        self.SPEC = spec
        self.path = Path(path)
        known = {
            "layer_path",
            "layers",
            "layers_variable",
            "date_field",
            "key",
            "object_id_field",
            "latest_field",
            "out_sr",
            "geometry",
            "watermark",
            "date_literal",
            "error_retries",
            "count_duplicates",
            "fields",
            "year_edge_layers",
            "layer_column",
        }
        unknown = set(config) - known
        if unknown:
            raise _config_error(self.path, f"unknown key(s) {sorted(unknown)}; known: {sorted(known)}")
        self.layer_path = config.get("layer_path")
        if not self.layer_path or "{year}" not in self.layer_path:
            raise _config_error(self.path, "layer_path must be a layer URL or path with a {year} placeholder")
        self.layers = {str(year): str(url) for year, url in (config.get("layers") or {}).items()}
        # Declared, so docker mode forwards the year -> layer Variable to the extractor container.
        (self.layers_variable,) = adapter_variables("arcgis", spec, config)
        self.SPEC = with_variables(spec, (self.layers_variable,))
        self.fields, self.by_source = configured_fields(
            config.get("fields"), self.path, lambda table: Field(table, self.path)
        )
        names = [field.name for field in self.fields]
        self.key = self._field(config.get("key"), "key")
        if spec.natural_key != self.key.name:
            raise _config_error(
                self.path, f"[source] natural_key {spec.natural_key!r} must be the key's lake name {self.key.name!r}"
            )
        self.date_field = self._field(config.get("date_field"), "date_field")
        if self.date_field.type != "timestamp":
            raise _config_error(self.path, f"date_field {self.date_field.source} must have type timestamp")
        self.latest_field = self._field(config["latest_field"], "latest_field") if config.get("latest_field") else None
        self.object_id_field = str(config.get("object_id_field") or self.key.source)
        self.count_duplicates = [self._field(name, "count_duplicates") for name in config.get("count_duplicates") or []]
        self.required = [self.key] + [f for f in self.fields if f.required and f is not self.key]
        geometry = config.get("geometry") or {}
        if set(geometry) - {"x", "y"} or (geometry and not (geometry.get("x") and geometry.get("y"))):
            raise _config_error(self.path, "geometry takes x and y (the lake names of the point's coordinates)")
        self.geometry = (str(geometry["x"]), str(geometry["y"])) if geometry else None
        self.out_sr = int(config.get("out_sr", 4326))
        self.watermark_field = str(config.get("watermark") or "lastEditDate")
        self.date_literal = str(config.get("date_literal") or "DATE").upper()
        if self.date_literal not in ("DATE", "TIMESTAMP"):
            raise _config_error(self.path, "date_literal must be DATE or TIMESTAMP")
        self.error_retries = int(config.get("error_retries", 2))
        self.year_edge_layers = config.get("year_edge_layers", True)
        if not isinstance(self.year_edge_layers, bool):
            raise _config_error(self.path, "year_edge_layers must be true or false")
        self.layer_column = str(config["layer_column"]) if config.get("layer_column") else None
        lake_names = names + list(self.geometry or ()) + ([self.layer_column] if self.layer_column else [])
        if len(set(lake_names)) != len(lake_names) or {"_block_month", "_landed_at"} & set(lake_names):
            raise _config_error(
                self.path, "geometry and layer_column names must differ from the fields' names and the _ columns"
            )
        layer = [(self.layer_column, pa.int32())] if self.layer_column else []
        self.data_schema = contract.data_schema(
            [(field.name, field.arrow_type) for field in self.fields]
            + ([(name, pa.float64()) for name in self.geometry] if self.geometry else [])
            + layer
        )
        self.quarantine_schema = contract.quarantine_schema(
            [(name, pa.string()) for name in names + list(self.geometry or ())] + layer
        )

    def _field(self, source, what: str) -> Field:
        if source not in self.by_source:
            raise _config_error(self.path, f"{what} {source!r} is not among the fields' sources")
        return self.by_source[source]

    def __repr__(self) -> str:
        return f"ArcGisFeatureLayerSource({self.SPEC.name!r}, {self.path.name})"

    # ------------------------------------------------------------ connection and layers

    def auth_headers(self, connection) -> dict:
        # Public layers need nothing; a token (the connection's password) goes in Esri's header,
        # never in a URL that could be logged.
        return {"X-Esri-Authorization": f"Bearer {connection.password}"} if connection.password else {}

    def variable_layers(self) -> dict[str, str]:
        """The Airflow Variable's year -> layer mapping (empty when it is not set)."""
        key = self.layers_variable
        # Outside Airflow (the extractor image, the CLI) the environment is the only place; inside
        # an Airflow worker the orchestration layer lets the Variable come from the metadata DB.
        raw = get_variable(key, None)
        if not raw or not raw.strip():
            return {}
        try:
            mapping = orjson.loads(raw)
        except orjson.JSONDecodeError as error:
            raise ValueError(
                f'Airflow Variable {key} is not JSON ({error}); expected {{"2024": "<layer url>"}}'
            ) from None
        if not isinstance(mapping, dict) or not all(isinstance(v, str) and v.strip() for v in mapping.values()):
            raise ValueError(f"Airflow Variable {key} must be a JSON object of year -> layer URL, got {raw[:200]!r}")
        return {str(year).strip(): url.strip() for year, url in mapping.items()}

    def layer_url(self, connection, year: int) -> str:
        value = self.variable_layers().get(str(year)) or self.layers.get(str(year)) or self.layer_path.format(year=year)
        if "://" in value:
            return value.rstrip("/")
        return f"{connection.base_url.rstrip('/')}/{value.strip('/')}"

    # ------------------------------------------------------------ requests

    def get_json(self, session, url: str, params: dict) -> tuple[dict, int]:
        """GET a JSON document; the error envelope raises (after retries when the code is 5xx/429)."""
        for attempt in range(self.error_retries + 1):
            body = get_bytes(session, url, params=params)
            retryable = False
            try:
                document = orjson.loads(body)
            except orjson.JSONDecodeError:
                error = ArcGisServiceError(f"{url}: expected a JSON document, got {body[:120]!r}", url=url)
                retryable = True  # an HTML error page from a proxy in front of the service
            else:
                if not isinstance(document, dict):
                    raise ArcGisServiceError(f"{url}: expected a JSON object, got {body[:120]!r}", url=url)
                if "error" not in document:
                    return document, len(body)
                envelope = document.get("error") or {}
                code = envelope.get("code") if isinstance(envelope, dict) else None
                message = envelope.get("message") if isinstance(envelope, dict) else str(envelope)
                details = envelope.get("details") if isinstance(envelope, dict) else None
                where = f" (where: {params['where']})" if params and params.get("where") else ""
                error = ArcGisServiceError(
                    f"ArcGIS error {code} from {url}{where}: {message}"
                    + (f"; details: {'; '.join(map(str, details))}" if details else ""),
                    code=code if isinstance(code, int) else None,
                    url=url,
                )
                retryable = isinstance(code, int) and (code >= 500 or code == 429)
                if code in (498, 499):
                    has = "the token in" if params is not None and self._has_token(session) else "no token in"
                    raise ArcGisServiceError(
                        f"{self.SPEC.name}: ArcGIS refused the request with {code} ({message}) from {url}: "
                        f"check {has} connection {self.SPEC.conn_id} (its password; tokens expire)",
                        code=code,
                        url=url,
                    )
            if not retryable or attempt == self.error_retries:
                raise error
            delay = retry_policy().delay(attempt, cap=math.inf)
            log.warning("%s; retrying in %.2f s (attempt %d of %d)", error, delay, attempt + 2, self.error_retries + 1)
            time.sleep(delay)
        raise AssertionError("unreachable")

    @staticmethod
    def _has_token(session) -> bool:
        return bool(getattr(session, "headers", {}).get("X-Esri-Authorization"))

    # ------------------------------------------------------------ metadata, watermark, drift

    def drift(self, layer_fields: list[dict]) -> dict:
        """Layer fields versus the configured ones; a missing required field raises SchemaDriftError.

        JSON keys are case-sensitive while ArcGIS names are not: a configured field found only in
        another case is read under the layer's spelling and reported as ``renamed_case``."""
        layer = {f.get("name"): f.get("type") for f in layer_fields if f.get("name")}
        folded = {name.casefold(): name for name in layer}
        wire, renamed, missing, changed = {}, {}, [], {}
        for field in self.fields:
            actual = field.source if field.source in layer else folded.get(field.source.casefold())
            if actual is None:
                missing.append(field.source)
                continue
            wire[field.source] = actual
            if actual != field.source:
                renamed[field.source] = actual
            if layer[actual] and layer[actual] not in COMPATIBLE_ESRI_TYPES[field.type]:
                changed[field.source] = {"expected": field.type, "layer": layer[actual]}
        known = set(wire.values())
        drift = {"new_fields": sorted(set(layer) - known), "missing_fields": sorted(missing)}
        if renamed:
            drift["renamed_case"] = renamed
        if changed:
            drift["changed_types"] = changed
        gone = [f.source for f in self.required if f.source in missing]
        if gone:
            raise SchemaDriftError(f"{self.SPEC.name}: required field(s) gone from the layer: {', '.join(gone)}")
        if drift["new_fields"] or drift["missing_fields"] or renamed or changed:
            log.warning("%s schema drift: %s", self.SPEC.name, drift)
        return {**drift, "wire_names": wire}

    def layer_years(self, month: str) -> list[int]:
        """The years whose layers a block reads: its own, then at a year edge the neighbour's."""
        parsed = parse_month(month)
        years = [parsed.year]
        if self.year_edge_layers and parsed.month == 1:
            years.append(parsed.year - 1)
        if self.year_edge_layers and parsed.month == 12:
            years.append(parsed.year + 1)
        return years

    def probe(
        self, session, connection, month: str | None = None, part: str | None = None, previous: dict | None = None
    ) -> dict:
        """The block's layers' metadata: watermark, page size, object id field and drift (one call a
        layer; two at a year edge, see the module docstring).

        Layers are per year, so the month is needed; ``run_block`` passes it."""
        if month is None:
            raise TypeError(f"{self.SPEC.name}: ArcGIS layers are per year, so probe() needs month='YYYY-MM'")
        own, *neighbours = self.layer_years(month)
        probed = self.probe_layer(session, connection, own)
        layers = [probed]
        for year in neighbours:
            layer = self.probe_layer(session, connection, year, neighbour=True)
            layers.append(layer)
            if layer.get("absent"):
                continue
            for name in ("new_fields", "missing_fields"):
                probed["drift"][name] = sorted(set(probed["drift"][name]) | set(layer["drift"][name]))
            for name in ("renamed_case", "changed_types", "date_fields_time_reference"):
                if name in layer["drift"] and name not in probed["drift"]:
                    probed["drift"][name] = layer["drift"][name]
        if neighbours:
            probed["watermark"] = (
                probed["watermark"]
                + "|"
                + ",".join(
                    f"{layer['year']}={'absent' if layer.get('absent') else layer['watermark']}" for layer in layers[1:]
                )
            )
        return {**probed, "layers": layers}

    def probe_layer(self, session, connection, year: int, neighbour: bool = False) -> dict:
        """One year's layer metadata. A neighbour layer the service does not have is ``absent``."""
        url = self.layer_url(connection, year)
        try:
            metadata, _size = self.get_json(session, url, {"f": "json"})
        except SourceHTTPError as error:
            # ArcGIS answers a service it does not have with 400 "Invalid URL" (on HTTP 200), some
            # servers with HTTP 404; anything else (a busy or refusing server) fails the block.
            missing = (getattr(error, "code", None) == 400 and "invalid url" in str(error).lower()) or getattr(
                error, "status", None
            ) == 404
            if neighbour and missing:
                log.info("%s: no layer for %d at %s (%s): nothing to add from it", self.SPEC.name, year, url, error)
                return {"year": year, "layer_url": url, "absent": True}
            raise
        editing = metadata.get("editingInfo") or {}
        watermark = editing.get(self.watermark_field)
        if not isinstance(watermark, (int, float)) or isinstance(watermark, bool):
            raise ArcGisServiceError(f"{url}: layer metadata has no editingInfo.{self.watermark_field}", url=url)
        page_size = metadata.get("maxRecordCount")
        if not isinstance(page_size, int) or isinstance(page_size, bool) or page_size < 1:
            raise ArcGisServiceError(f"{url}: layer metadata has no usable maxRecordCount ({page_size!r})", url=url)
        drift = self.drift(metadata.get("fields") or [])
        wire = drift.pop("wire_names")
        time_reference = metadata.get("dateFieldsTimeReference")
        if time_reference and str(time_reference.get("timeZone", "UTC")).upper() not in (
            "UTC",
            "COORDINATED UNIVERSAL TIME",
        ):
            drift["date_fields_time_reference"] = time_reference
            log.warning("%s: layer %s declares dates in %s, not UTC", self.SPEC.name, url, time_reference)
        return {
            "watermark": str(int(watermark)),
            "drift": drift,
            "year": year,
            "layer_url": url,
            "max_record_count": page_size,
            "object_id_field": metadata.get("objectIdField") or self.object_id_field,
            "wire_names": wire,
        }

    # ------------------------------------------------------------ the block

    def where_clause(self, month: str) -> str:
        start, end = (bound[:19].replace("T", " ") for bound in month_bounds(month))
        name, literal = self.date_field.source, self.date_literal
        return f"{name} >= {literal} '{start}' AND {name} < {literal} '{end}'"

    def query_params(self, month: str, offset: int, page_size: int, object_id_field: str) -> dict:
        params = {
            "where": self.where_clause(month),
            "outFields": "*",
            "orderByFields": f"{object_id_field} ASC",
            "resultOffset": str(offset),
            "resultRecordCount": str(page_size),
            "f": "json",
        }
        if self.geometry:
            params.update(returnGeometry="true", outSR=str(self.out_sr))
        else:
            params["returnGeometry"] = "false"
        return params

    def iter_pages(self, session, probed: dict, month: str):
        """Yield ``(features, bytes, fields)`` for each page of the month, in object id order
        (``fields``: the answer's own field list, or None).

        The next page is requested (in a background thread) as soon as the current answer says
        ``exceededTransferLimit``, while the caller converts the current one, so the requests are
        exactly the month's pages and the service's latency overlaps our parsing."""
        url = f"{probed['layer_url']}/query"
        page_size = probed["max_record_count"]

        def fetch(offset: int) -> tuple[dict, int]:
            return self.get_json(session, url, self.query_params(month, offset, page_size, probed["object_id_field"]))

        with prefetch_pool("arcgis-prefetch") as pool:
            offset, pending = 0, pool.submit(fetch, 0)
            while pending is not None:
                document, size = pending.result()
                features = document.get("features")
                if not isinstance(features, list):
                    raise ArcGisServiceError(f"{url} offset {offset}: the answer has no features list", url=url)
                pending = None
                if document.get("exceededTransferLimit") is True:
                    if not features:
                        raise ArcGisServiceError(
                            f"{url} offset {offset}: exceededTransferLimit on an empty page", url=url
                        )
                    if len(features) < page_size:
                        # A server capping pages below its own maxRecordCount: step by what came, or rows are skipped.
                        log.warning(
                            "%s offset %d: %d features on a page of %d with more to come",
                            url,
                            offset,
                            len(features),
                            page_size,
                        )
                    offset += min(page_size, len(features))
                    pending = pool.submit(fetch, offset)
                yield features, size, document.get("fields")

    def page_schema(self, page_fields, wire: dict, month: str, offset: int, drift: dict, missing_pages: dict) -> None:
        """One answer's ``fields`` against the dataset file (see the module docstring)."""
        if not isinstance(page_fields, list):
            return
        declared = {f.get("name"): f.get("type") for f in page_fields if isinstance(f, dict) and f.get("name")}
        folded = {name.casefold(): name for name in declared}
        known = set()
        gone = []
        for field in self.fields:
            name = wire.get(field.source, field.source)
            actual = name if name in declared else folded.get(name.casefold())
            if actual is None:
                if field in self.required:
                    gone.append(field.source)
                else:
                    missing_pages[field.source] = missing_pages.get(field.source, 0) + 1
                continue
            known.add(actual)
            kind = declared[actual]
            if kind and kind not in COMPATIBLE_ESRI_TYPES[field.type]:
                drift.setdefault("changed_types", {})[field.source] = {"expected": field.type, "declared": kind}
        if gone:
            raise SchemaDriftError(
                f"{self.SPEC.name} {month}: required attribute(s) {', '.join(gone)} gone from the query answer at "
                f"resultOffset {offset} although the layer's metadata lists them: the schema changed while the "
                "block was read; nothing landed, the previous landing stays"
            )
        unknown = set(declared) - known
        if unknown - set(drift["new_fields"]):
            drift["new_fields"] = sorted(set(drift["new_fields"]) | unknown)

    def page_table(
        self, features: list, wire: dict, month: str, landed_at: datetime, layer_year: int | None = None
    ) -> tuple[pa.Table, pa.Table | None, dict]:
        """One page of features (of ``layer_year``'s layer) to (typed good rows, quarantined rows, counts)."""
        return features_table(self, features, wire, month, landed_at, layer_year)

    def collapse_duplicates(self, table: pa.Table) -> tuple[pa.Table, int]:
        """One row per key (the latest ``latest_field``, then the last seen), in key order."""
        return one_row_per_key(table, self.key.name, self.latest_field)

    def extract_block(
        self, session, connection, month: str, probed: dict, landed_at: datetime | None = None, **_runner_keywords
    ) -> BlockData:
        """One month's block (the runner's keywords beyond ``landed_at`` do not concern this adapter)."""
        landed_at = landed_at or datetime.now(UTC)
        if probed.get("year") != parse_month(month).year or "layer_url" not in probed or "layers" not in probed:
            probed = {**probed, **self.probe(session, connection, month=month)}
        started = time.monotonic()
        quarantines, reasons, nulled = [], {}, {}
        pages = fetched = fetched_bytes = collapsed = 0
        drift = probed["drift"]
        missing_pages: dict[str, int] = {}
        layer_tables, layer_rows = [], {}
        for layer in probed["layers"]:
            if layer.get("absent"):
                layer_rows[str(layer["year"])] = None
                continue
            goods = []
            wire = layer.get("wire_names") or {}
            for features, size, page_fields in self.iter_pages(session, layer, month):
                self.page_schema(page_fields, wire, month, pages * layer["max_record_count"], drift, missing_pages)
                pages += 1
                fetched += len(features)
                fetched_bytes += size
                good, quarantine, stats = self.page_table(features, wire, month, landed_at, layer["year"])
                goods.append(good)
                if quarantine is not None:
                    quarantines.append(quarantine)
                    contract.reason_counts(quarantine[contract.REASON], into=reasons)
                for name, count in stats["nulled_values"].items():
                    nulled[name] = nulled.get(name, 0) + count
            table = pa.concat_tables(goods) if goods else self.data_schema.empty_table()
            goods.clear()
            # Object ids are unique within a layer only: repeats collapse layer by layer.
            table, repeated = self.collapse_duplicates(table)
            collapsed += repeated
            layer_rows[str(layer["year"])] = table.num_rows
            layer_tables.append((layer["year"], table))
        if missing_pages:
            drift["missing_fields"] = sorted(set(drift["missing_fields"]) | set(missing_pages))
            drift["pages_without"] = dict(sorted(missing_pages.items()))
            log.warning(
                "%s %s: attribute(s) missing from pages (they land as null): %s", self.SPEC.name, month, missing_pages
            )
        # Layers in year order, each in object id order: the same content gives the same bytes.
        data = pa.concat_tables([table for _year, table in sorted(layer_tables, key=lambda item: item[0])])
        del layer_tables
        # combine_chunks() column by column: `columns` holds the block's only references, so each
        # column's pages are freed as its single chunk replaces them (one column extra, not a block).
        table_schema, columns = data.schema, data.columns
        del data
        for i in range(len(columns)):
            columns[i] = columns[i].combine_chunks()
        data = pa.Table.from_arrays(columns, schema=table_schema)
        repeats = {}
        for field in self.count_duplicates:
            present = pc.drop_null(data[field.name])  # distinct values by unique(): half count_distinct's memory
            repeats[field.name] = len(present) - len(pc.unique(present))
        seconds = time.monotonic() - started
        return BlockData(
            data=data,
            quarantine=pa.concat_tables(quarantines) if quarantines else None,
            stats={
                "layer_url": probed["layer_url"],
                # rows landed from each layer read (null: the neighbour layer does not exist)
                "layer_rows": layer_rows,
                "where": self.where_clause(month),
                "page_size": probed["max_record_count"],
                "pages": pages,
                "fetched_rows": fetched,
                "fetched_bytes": fetched_bytes,
                "duplicates_collapsed": collapsed,
                "duplicate_values": repeats,
                "quarantine_reasons": reasons,
                "nulled_values": nulled,
                "drift": probed["drift"],
                "rows_per_second": round(fetched / seconds) if seconds > 0 else None,
            },
        )
