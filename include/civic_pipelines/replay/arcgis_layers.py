"""One dataset served by the replay as ArcGIS hosted feature layers, one per year (:class:`LayerFamily`): the
layer and service metadata, the ``/query`` parameters (``where``, ``outFields``, ``orderByFields``, paging,
``returnCountOnly``/``returnIdsOnly``, ``outSR``, ``f``), the answer's features and the data faults applied
to them. The routes, the service-wide faults and the error rendering are in ``arcgis.py``.
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict

import orjson

from civic_pipelines.replay.arcgis_where import CHECK_PARAMETERS, INVALID_QUERY, ArcGisError, Where, ranges_overlap
from civic_pipelines.replay.config_values import apply_settings, late_edit_list, whole_number
from civic_pipelines.replay.page_overlap import PageOverlap
from civic_pipelines.replay.server import check_config_keys

NEW_FIELD = ("EditDate", "esriFieldTypeDate")  # what editor tracking adds to a hosted layer
DEFAULT_MAX_RECORD_COUNT = 2000  # not ArcGIS Online's 1000 or 16000 default: clients must read it
CURRENT_VERSION = 11.5
_WEB_MERCATOR = {"wkid": 102100, "latestWkid": 3857}
_WGS84 = {"wkid": 4326, "latestWkid": 4326}
_UNSUPPORTED = (
    "geometry",
    "outstatistics",
    "groupbyfieldsforstatistics",
    "having",
    "time",
    "quantizationparameters",
    "returndistinctvalues",
    "returnextentonly",
)


class LayerFamily:
    """One dataset served as one layer per year under ``path_pattern`` (with ``{year}``).

    The dataset needs: ``name``, ``years``/``has_year(year)``, ``layer_months(year)`` (the UTC
    months that may hold the layer's rows), ``layer_month_count(year, month)``,
    ``layer_records(year, month)`` (``(attributes, (x, y, lon, lat))`` of the month filed in the
    layer), ``date_range(month)``, ``object_id_range(month)``, ``editing_info(year)``, ``fields()``,
    ``field_types()``, ``layer_name(year)``, ``date_field``, ``object_id_field``, ``version``,
    ``reset()``, ``set_rows_per_month()``, ``set_years()``, ``set_layer_time_zone()``,
    ``apply_late_edits()``."""

    def __init__(
        self,
        dataset,
        path_pattern: str,
        name: str | None = None,
        max_record_count: int = DEFAULT_MAX_RECORD_COUNT,
        accept_epoch_dates: bool = False,
    ) -> None:
        if "{year}" not in path_pattern:
            raise ValueError("path_pattern needs a {year} placeholder")
        self.dataset = dataset
        self.name = name or dataset.name
        self.path_pattern = path_pattern
        self.max_record_count = whole_number("max_record_count", max_record_count, 1)
        self.accept_epoch_dates = bool(accept_epoch_dates)
        self._initial = (self.max_record_count, self.accept_epoch_dates)
        self.page_overlap = PageOverlap()
        service, _, layer = path_pattern.rstrip("/").rpartition("/")
        if not layer.isdigit():
            raise ValueError("path_pattern must end in the layer id, e.g. .../FeatureServer/0")
        self.layer_id = int(layer)
        head, _, tail = service.partition("{year}")
        self._service_re = re.compile(
            "^"
            + _arcgis_insensitive(re.escape(head))
            + r"(?P<year>\d{4})"
            + re.escape(tail)
            + r"(?P<rest>(?:/[^/]*)*)$"
        )
        prefix = head[: head.rfind("/") + 1]
        self.prefixes = sorted({prefix, prefix.replace("/arcgis/", "/ArcGIS/"), prefix.replace("/ArcGIS/", "/arcgis/")})
        # A month's records filtered by a where clause, per (data version, month, where): a client
        # paging a month asks the same where once per page, and filtering a large month for every
        # page would make the emulator, not the client, the measured cost.
        self._matched: OrderedDict = OrderedDict()
        self._matched_lock = threading.Lock()

    def _matched_month(self, year: int, month: str, where_text: str, compute) -> list:
        key = (self.dataset.version, year, month, where_text, self.accept_epoch_dates)
        with self._matched_lock:
            if key in self._matched:
                self._matched.move_to_end(key)
                return self._matched[key]
        rows = compute()
        with self._matched_lock:
            self._matched[key] = rows
            while len(self._matched) > 16:
                self._matched.popitem(last=False)
        return rows

    def match(self, path: str):
        """``(year, rest segments)`` when the path is under one of this family's services."""
        m = self._service_re.match(path)
        if not m:
            return None
        return int(m.group("year")), [seg for seg in m.group("rest").split("/")[1:]]

    # ------------------------------------------------------------ configuration

    def configure(self, config: dict) -> dict:
        ds = self.dataset
        settings = {
            "max_record_count": self._set_max_record_count,
            "accept_epoch_dates": self._set_accept_epoch_dates,
            "layer_time_zone": ds.set_layer_time_zone,
            "rows_per_month": ds.set_rows_per_month,
        }
        check_config_keys(self.name, config, {*settings, "first_year", "last_year", "late_edits"})
        result: dict = {}
        if "first_year" in config or "last_year" in config:
            ds.set_years(config.get("first_year"), config.get("last_year"))
        apply_settings(config, settings)
        if "late_edits" in config:
            result["late_edits"] = []
            for edit in late_edit_list(config["late_edits"]):
                ids = ds.apply_late_edits(edit["month"], int(edit.get("n", 1)))
                year = ds.year_of(edit["month"])
                result["late_edits"].append(
                    {"month": edit["month"], "object_ids": ids, "lastEditDate": ds.layer_last_edit_date(year)}
                )
        result.update(self.describe())
        return result

    def _set_max_record_count(self, value) -> None:
        self.max_record_count = whole_number("max_record_count", value, 1)

    def _set_accept_epoch_dates(self, value) -> None:
        if not isinstance(value, bool):
            raise ValueError("accept_epoch_dates must be true or false")
        self.accept_epoch_dates = value

    def describe(self) -> dict:
        ds = self.dataset
        return {
            "path_pattern": self.path_pattern,
            "seed": ds.seed,
            "rows_per_month": ds.rows_per_month,
            "max_record_count": self.max_record_count,
            "accept_epoch_dates": self.accept_epoch_dates,
            "first_year": ds.first_year,
            "last_year": ds.last_year,
            "layer_time_zone": ds.layer_time_zone,
            "lastEditDate": {str(year): ds.layer_last_edit_date(year) for year in ds.years},
        }

    def reset_data(self) -> None:
        self.max_record_count, self.accept_epoch_dates = self._initial
        self.dataset.reset()

    # ------------------------------------------------------------ documents

    def service_json(self, year: int) -> dict:
        ds = self.dataset
        return {
            "currentVersion": CURRENT_VERSION,
            "serviceItemId": _item_id(self.name, year),
            "serviceDescription": "",
            "hasVersionedData": False,
            "supportsDisconnectedEditing": False,
            "hasStaticData": False,
            "maxRecordCount": self.max_record_count,
            "supportedQueryFormats": "JSON",
            "capabilities": "Query",
            "description": "",
            "copyrightText": "",
            "spatialReference": dict(_WEB_MERCATOR),
            "allowGeometryUpdates": True,
            "units": "esriMeters",
            "editingInfo": ds.editing_info(year),
            "layers": [
                {
                    "id": self.layer_id,
                    "name": ds.layer_name(year),
                    "parentLayerId": -1,
                    "defaultVisibility": True,
                    "subLayerIds": None,
                    "minScale": 0,
                    "maxScale": 0,
                    "geometryType": "esriGeometryPoint",
                }
            ],
            "tables": [],
        }

    def layer_json(self, year: int) -> dict:
        ds = self.dataset
        return {
            "currentVersion": CURRENT_VERSION,
            "id": self.layer_id,
            "name": ds.layer_name(year),
            "type": "Feature Layer",
            "serviceItemId": _item_id(self.name, year),
            "displayField": "TITLE",
            "description": "",
            "copyrightText": "",
            "defaultVisibility": True,
            "editingInfo": ds.editing_info(year),
            "geometryType": "esriGeometryPoint",
            "hasZ": False,
            "hasM": False,
            "minScale": 0,
            "maxScale": 0,
            "extent": {
                "xmin": -10389600.0,
                "ymin": 5607500.0,
                "xmax": -10374500.0,
                "ymax": 5632900.0,
                "spatialReference": dict(_WEB_MERCATOR),
            },
            "hasAttachments": False,
            "objectIdField": ds.object_id_field,
            "uniqueIdField": {"name": ds.object_id_field, "isSystemMaintained": True},
            "globalIdField": "",
            "typeIdField": "",
            "fields": ds.fields(),
            "types": [],
            "templates": [],
            "supportedQueryFormats": "JSON",
            "hasStaticData": False,
            "maxRecordCount": self.max_record_count,
            "standardMaxRecordCount": 32000,
            "tileMaxRecordCount": 8000,
            "maxRecordCountFactor": 1,
            "capabilities": "Query",
            "useStandardizedQueries": True,
            "advancedQueryCapabilities": {
                "supportsPagination": True,
                "supportsOrderBy": True,
                "supportsQueryWithResultType": False,
                "supportsStatistics": False,
                "supportsDistinct": False,
                "supportsReturningQueryExtent": False,
            },
        }

    # ------------------------------------------------------------ query

    def query(self, year: int, params: dict[str, str], faults) -> tuple[dict, bool]:
        """The query response document and whether it is a feature page."""
        ds = self.dataset
        types = ds.field_types()
        oid = ds.object_id_field
        for name in _UNSUPPORTED:
            value = params.get(name, "").strip()
            if value and value.lower() not in ("false", "none", "null"):
                raise ArcGisError(
                    INVALID_QUERY, [CHECK_PARAMETERS], reason=f"parameter {name} is not supported by the replay"
                )

        where_text = params.get("where", "").strip()
        object_ids = params.get("objectids", "").strip()
        if not where_text and not object_ids:
            raise ArcGisError(INVALID_QUERY, ["'where' parameter is invalid"], reason="where is required")
        where = Where(where_text, types, self.accept_epoch_dates) if where_text else None
        id_filter = None
        if object_ids:
            try:
                id_filter = frozenset(int(v) for v in object_ids.split(",") if v.strip())
            except ValueError:
                raise ArcGisError(
                    INVALID_QUERY, ["'objectIds' parameter is invalid"], reason="objectIds must be integers"
                ) from None

        out_fields = _out_fields(params.get("outfields", ""), types, oid)
        order = _order_by(params.get("orderbyfields", ""), types)
        count_only = _bool_param(params, "returncountonly")
        ids_only = _bool_param(params, "returnidsonly")
        return_geometry = _bool_param(params, "returngeometry", default=True)
        out_sr = _out_sr(params.get("outsr", ""))
        offset = _int_param(params, "resultoffset", 0)
        count = _int_param(params, "resultrecordcount", 0)
        limit = self.max_record_count if count <= 0 else min(count, self.max_record_count)

        months = self._months(year, where, id_filter)
        default_order = not order or order == [(oid, False)]
        if not (count_only or ids_only):
            offset = self.page_overlap.offset(
                (year, where_text, object_ids, params.get("orderbyfields", "")), offset, faults
            )

        def matching(records):
            if where is not None and where.constant is False:
                return []
            out = records
            if where is not None and where.constant is None:
                out = [rec for rec in out if where.predicate(rec[0]) is True]
            if id_filter is not None:
                out = [rec for rec in out if rec[0][oid] in id_filter]
            return out

        if count_only:
            if id_filter is None and (where is None or where.constant is True):
                return {"count": sum(ds.layer_month_count(year, m) for m in months)}, False
            return {"count": sum(len(matching(ds.layer_records(year, m))) for m in months)}, False

        if ids_only or not default_order:
            matched = []
            for month in months:
                matched.extend(matching(ds.layer_records(year, month)))
            if not default_order:
                matched = _sort(matched, order)
            if ids_only:
                return {"objectIdFieldName": oid, "objectIds": [rec[0][oid] for rec in matched]}, False
            page = matched[offset : offset + limit]
            more = len(matched) > offset + limit
        else:  # OBJECTID order is month order: generate and filter only the months the page needs
            collected: list = []
            skipped = 0
            for month in months:
                if skipped < offset and id_filter is None and (where is None or where.constant is True):
                    n = ds.layer_month_count(year, month)
                    if skipped + n <= offset:
                        skipped += n
                        continue
                if id_filter is None and where is not None and where.constant is None:
                    rows = self._matched_month(
                        year, month, where_text, lambda month=month: matching(ds.layer_records(year, month))
                    )
                else:
                    rows = matching(ds.layer_records(year, month))
                k = 0
                if skipped < offset:
                    k = min(offset - skipped, len(rows))
                    skipped += k
                collected.extend(rows[k : k + limit + 1 - len(collected)])  # one slice: no copy of the month
                if len(collected) > limit:
                    break
            page = collected[:limit]
            more = len(collected) > limit

        features = []
        all_fields = len(out_fields) == len(types)
        for attrs, geom in page:
            feature = {"attributes": attrs if all_fields else {f: attrs.get(f) for f in out_fields}}
            if return_geometry:
                feature["geometry"] = {"x": geom[2], "y": geom[3]} if out_sr == 4326 else {"x": geom[0], "y": geom[1]}
            features.append(feature)
        if features and faults.get("reset_mid_page") == 0:
            features = _data_faults(features, faults, ds)
        fields_by_name = {f["name"]: f for f in ds.fields()}
        doc_fields = [_query_field(fields_by_name[f]) for f in out_fields]
        if faults.get("reset_mid_page") == 0:
            features, doc_fields, emptied = _field_faults(features, doc_fields, faults, ds)
            more = more and not emptied
        document = {
            "objectIdFieldName": oid,
            "uniqueIdField": {"name": oid, "isSystemMaintained": True},
            "globalIdFieldName": "",
            "geometryType": "esriGeometryPoint",
            "spatialReference": dict(_WGS84 if out_sr == 4326 else _WEB_MERCATOR),
            "fields": doc_fields,
            "features": features,
        }
        if more:
            document["exceededTransferLimit"] = True
        return document, True

    def _months(self, year: int, where: Where | None, id_filter) -> list[str]:
        """The layer's months a query can touch (by the date field and the object id)."""
        ds = self.dataset
        months = [m for m in ds.layer_months(year) if ds.layer_month_count(year, m) > 0]
        if where is not None and where.constant is False:
            return []
        if id_filter is not None:
            months = [
                m for m in months if any(ds.object_id_range(m)[0] <= i <= ds.object_id_range(m)[1] for i in id_filter)
            ]
        if where is None or where.constant is not None:
            return months
        date_ranges = where.ranges(ds.date_field)
        if date_ranges is not None:
            months = [m for m in months if ranges_overlap(date_ranges, *ds.date_range(m))]
        id_ranges = where.ranges(ds.object_id_field)
        if id_ranges is not None:
            months = [m for m in months if ranges_overlap(id_ranges, *ds.object_id_range(m))]
        return months


def _arcgis_insensitive(escaped: str) -> str:
    return escaped.replace("/arcgis/", "/(?:arcgis|ArcGIS)/").replace("/ArcGIS/", "/(?:arcgis|ArcGIS)/")


def _item_id(name: str, year: int) -> str:
    import hashlib

    return hashlib.md5(f"{name}:{year}".encode()).hexdigest()


def _query_field(field: dict) -> dict:
    out = {k: field[k] for k in ("name", "type", "alias", "sqlType") if k in field}
    if "length" in field:
        out["length"] = field["length"]
    out.update(domain=None, defaultValue=None)
    return out


def _bool_param(params: dict, name: str, default: bool = False) -> bool:
    value = params.get(name, "").strip().lower()
    if value == "":
        return default
    if value in ("true", "1"):
        return True
    if value in ("false", "0"):
        return False
    raise ArcGisError(INVALID_QUERY, [f"'{name}' parameter is invalid"], reason=f"{name} must be true or false")


def _int_param(params: dict, name: str, default: int) -> int:
    value = params.get(name, "").strip()
    if value == "":
        return default
    try:
        number = int(value)
    except ValueError:
        raise ArcGisError(
            INVALID_QUERY, [f"'{name}' parameter is invalid"], reason=f"{name} must be an integer"
        ) from None
    if number < 0:
        raise ArcGisError(INVALID_QUERY, [f"'{name}' parameter is invalid"], reason=f"{name} must be >= 0")
    return number


def _out_sr(value: str) -> int:
    value = value.strip()
    if not value:
        return 102100
    if value.startswith("{"):
        try:
            value = str(orjson.loads(value).get("wkid", ""))
        except (orjson.JSONDecodeError, AttributeError):
            value = "?"
    if value == "4326":
        return 4326
    if value in ("102100", "3857", "102113"):
        return 102100
    raise ArcGisError(
        INVALID_QUERY, ["'outSR' parameter is invalid"], reason="the replay serves outSR 4326 or 102100/3857 only"
    )


def _out_fields(text: str, types: dict[str, str], oid: str) -> list[str]:
    names = {name.lower(): name for name in types}
    items = [item.strip() for item in text.split(",") if item.strip()]
    if not items:
        return [oid]
    if "*" in items:
        return list(types)
    out = []
    for item in items:
        name = names.get(item.strip('"').lower())
        if name is None:
            raise ArcGisError(
                INVALID_QUERY,
                [f"'Invalid field: {item}' parameter is invalid"],
                reason=f"outFields: unknown field {item!r}",
            )
        if name not in out:
            out.append(name)
    return out


def _order_by(text: str, types: dict[str, str]) -> list[tuple[str, bool]]:
    names = {name.lower(): name for name in types}
    order = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        parts = item.split()
        direction = parts[1].upper() if len(parts) > 1 else "ASC"
        name = names.get(parts[0].strip('"').lower())
        if name is None or len(parts) > 2 or direction not in ("ASC", "DESC"):
            raise ArcGisError(
                INVALID_QUERY,
                ["'orderByFields' parameter is invalid"],
                reason=f"orderByFields: cannot order by {item!r}",
            )
        order.append((name, direction == "DESC"))
    return order


def _sort(records: list, order: list[tuple[str, bool]]) -> list:
    out = list(records)
    for name, descending in reversed(order):  # stable sorts, last key first; nulls sort first
        out.sort(key=lambda rec, n=name: _sort_key(rec[0].get(n)), reverse=descending)
    return out


def _sort_key(value):
    return (False, 0) if value is None else (True, value)


def _data_faults(features: list[dict], faults, dataset) -> list[dict]:
    """``malformed_row`` and ``duplicate_row`` on a feature page."""
    date_field, oid = dataset.date_field, dataset.object_id_field
    if faults.take("malformed_row"):
        features = list(features)
        first = dict(features[0]["attributes"])
        first.pop(oid, None)
        second = dict(features[1 % len(features)]["attributes"])
        if date_field in second:
            second[date_field] = "not-a-date"
        if oid in second:
            second[oid] = 999_999_999
        bad = [{**features[0], "attributes": first}, {**features[1 % len(features)], "attributes": second}]
        step = max(1, len(features) // 3)
        for k, feature in enumerate(bad):
            features.insert(min(len(features), (k + 1) * step + k), feature)
    if faults.take("duplicate_row"):
        original = features[0]
        attrs = dict(original["attributes"])
        for name in ("LastUpdateDate",):
            if isinstance(attrs.get(name), int):
                attrs[name] += 3_600_000
        features = list(features) + [{**original, "attributes": attrs}]
    return features


def _field_faults(features: list[dict], fields: list[dict], faults, dataset) -> tuple[list, list, bool]:
    """``empty_month``, ``drop_field``, ``new_field``, ``retype_field`` on a feature page; the
    features' attribute dicts are copied before any change (the dataset's are shared)."""
    emptied = False
    if faults.take("empty_month"):
        features, emptied = [], True
    if faults.take("drop_field"):
        name = faults.field or dataset.date_field
        fields = [f for f in fields if f["name"] != name]
        features = [{**f, "attributes": {k: v for k, v in f["attributes"].items() if k != name}} for f in features]
    if faults.take("new_field"):
        name, kind = NEW_FIELD
        fields = fields + [
            {
                "name": name,
                "type": kind,
                "alias": name,
                "sqlType": "sqlTypeOther",
                "length": 8,
                "domain": None,
                "defaultValue": None,
            }
        ]
        features = [
            {
                **f,
                "attributes": {
                    **f["attributes"],
                    name: f["attributes"].get("LastUpdateDate") or f["attributes"].get(dataset.date_field),
                },
            }
            for f in features
        ]
    if faults.take("retype_field"):
        numeric = (
            "esriFieldTypeDouble",
            "esriFieldTypeInteger",
            "esriFieldTypeSmallInteger",
            "esriFieldTypeBigInteger",
            "esriFieldTypeSingle",
        )
        name = faults.field or next((f["name"] for f in fields if f["type"] in numeric), None)
        fields = [{**f, "type": "esriFieldTypeString", "length": 256} if f["name"] == name else f for f in fields]

        def as_text(value):
            if isinstance(value, float) and value.is_integer():
                return str(int(value))
            return None if value is None else str(value)

        features = [
            {**f, "attributes": {**f["attributes"], name: as_text(f["attributes"].get(name))}}
            if name in f["attributes"]
            else f
            for f in features
        ]
    return features, fields, emptied
