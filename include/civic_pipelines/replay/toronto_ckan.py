"""Toronto 311 on the replay's CKAN service (Open Data Toronto): the generated dataset (``toronto.py``) as
the package ``311-service-requests-customer-initiated``, one resource per year (``SR<YYYY>``), the years
that live outside CKAN at toronto.ca's URL shape, the readme resource, and the data faults' variants of a
year's file. The action API and the downloads are in ``ckan.py``, whose docstring lists the faults.

Routes (after the host ``https://ckan0.cf.opendata.inter.prod-toronto.ca``; see ``ckan.py``): the package
``/dataset/<package id>/resource/<resource id>/download/sr<YYYY>.zip`` (or ``.csv``), and the years that
live outside CKAN (2020, 2021) at toronto.ca's ``/data/311/opendata/servicerequest/SR<YYYY>.zip``.

Configuration (``POST /_replay/config``), section ``toronto_311``::

    {"late_edits": {"year": 2024, "month": "2024-02", "n": 5}}   (or a list of them)
    {"rows_per_year": 1000}          rows per complete year (null: the real volumes)
    {"current_through": "2026-09-07"} last day in the current year's file
    {"resource_format": "CSV"}        list plain CSV resources instead of ZIP
    {"date_quirks": true}             rows dated outside the year and impossible dates (not in the contract)
    {"location_quirks": true}         rows with an empty Ward, or an empty postal prefix (requests without a location)
    {"size_policy": "eager"}          fill every resource's size in package_show ("auto", "eager", "lazy")
    {"prebuild": true}                build every year's file now (fills every size)
"""

from __future__ import annotations

import datetime as _dt
import re
import uuid

from civic_pipelines.replay.ckan import DOWNLOAD_PREFIX, CkanApi
from civic_pipelines.replay.config_values import apply_settings, late_edit_list
from civic_pipelines.replay.server import check_config_keys
from civic_pipelines.replay.toronto import PACKAGE_TITLE, Toronto311Dataset
from civic_pipelines.replay.zip_files import build_zip, etag_for

CKAN_BASE = "https://ckan0.cf.opendata.inter.prod-toronto.ca"
EXTERNAL_PREFIX = "/data/311/opendata/servicerequest/"
README_ID = "bb11ece8-a2b3-401a-92c0-fa115f867fff"
README_NAME = "311-service-requests-readme"
# Resource ids seen in real package_show output (2026 from a consumer's fixture, uncertain);
# other years, including every year after 2026 (a new SR<YYYY> resource each year, see horizon.py),
# get stable made-up ids: uuid5 of the package and year, generated here, not real ones.
KNOWN_RESOURCE_IDS = {
    2022: "f00a3313-f074-463e-89a7-26563084fbef",
    2023: "079766f3-815d-4257-8731-5ff6b0c84c13",
    2026: "99b7f283-7345-4f5a-a126-d078ed4f3419",
}
EXTERNAL_YEARS = (2020, 2021)  # resources whose url is toronto.ca's SR<YYYY>.zip, not CKAN
_ID_NAMESPACE = uuid.UUID("6f0f3a3e-1b3c-4f47-9d2a-3a1d0c311311")
_MIME = {
    "ZIP": "application/zip",
    "CSV": "text/csv",
    "XLSX": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}
_README_MODIFIED = "2019-07-23T17:46:11.532718"
_SIZE_AUTO_LIMIT = 2_000_000  # "auto": fill every size when all years together are this small
# ---------------------------------------------------------------- the Toronto 311 package


class TorontoCkanPackage:
    """Adapts a :class:`~civic_pipelines.replay.toronto.Toronto311Dataset` to a CKAN package."""

    name = "toronto_311"  # the config section
    external_prefix = EXTERNAL_PREFIX  # the years that live outside CKAN: toronto.ca's URL shape
    external_file = re.compile(r"(?i)sr(\d{4})\.(zip|csv)")  # a file under it: its year and kind
    unserved_resources = {README_ID: "The readme workbook is not replayed"}  # listed, not downloadable

    def __init__(
        self,
        dataset: Toronto311Dataset,
        resource_format: str = "ZIP",
        external_years=EXTERNAL_YEARS,
        size_policy: str = "auto",
    ) -> None:
        self.dataset = dataset
        self.package_name = dataset.package_name
        self.package_id = dataset.package_id
        self.resource_format = self._check_format(resource_format)
        self.external_years = tuple(external_years)
        self.size_policy = self._check_policy(size_policy)
        self._initial = (self.resource_format, self.size_policy)

    @staticmethod
    def _check_format(value: str) -> str:
        value = str(value).upper()
        if value not in ("ZIP", "CSV"):
            raise ValueError("resource_format must be ZIP or CSV")
        return value

    @staticmethod
    def _check_policy(value: str) -> str:
        if value not in ("auto", "eager", "lazy"):
            raise ValueError("size_policy must be auto, eager or lazy")
        return value

    def _set_resource_format(self, value: str) -> None:
        self.resource_format = self._check_format(value)

    def _set_size_policy(self, value: str) -> None:
        self.size_policy = self._check_policy(value)

    # ------------------------------------------------------------ identity

    def matches(self, ident: str) -> bool:
        return ident in (self.package_name, self.package_id)

    def resource_id(self, year: int) -> str:
        return KNOWN_RESOURCE_IDS.get(year) or str(uuid.uuid5(_ID_NAMESPACE, f"{self.package_id}/SR{year}"))

    def year_for_resource(self, resource_id: str) -> int | None:
        for year in self.dataset.years():
            if self.resource_id(year) == resource_id:
                return year
        return None

    def kind(self) -> str:
        return self.resource_format.lower()

    def file_name(self, year: int, kind: str | None = None) -> str:
        kind = kind or self.kind()
        if year in self.external_years:
            return f"SR{year}.{kind}"
        return f"sr{year}.{kind}"

    def eager_sizes(self) -> bool:
        if self.size_policy != "auto":
            return self.size_policy == "eager"
        rows = self.dataset.rows_per_year
        return rows is not None and rows * len(self.dataset.years()) <= _SIZE_AUTO_LIMIT

    # ------------------------------------------------------------ metadata

    def resource(self, year: int, base: str, position: int) -> dict:
        ds = self.dataset
        kind = self.kind()
        rid = self.resource_id(year)
        external = year in self.external_years
        if external:
            url = f"{base}{EXTERNAL_PREFIX}{self.file_name(year)}"
            size = None  # a link: CKAN does not know its size
        else:
            url = f"{base}{DOWNLOAD_PREFIX}{self.package_id}/resource/{rid}/download/{self.file_name(year)}"
            if self.eager_sizes():
                ds.file(year, kind)
            size = ds.known_size(year, kind)
        modified = ds.last_modified(year)
        return {
            "cache_last_updated": None,
            "cache_url": None,
            "created": ds.created(year),
            "datastore_active": False,
            "format": self.resource_format,
            "hash": "",
            "id": rid,
            "is_datastore_cache_file": False,
            "is_preview": False,
            "last_modified": modified,
            "metadata_modified": modified,
            "mimetype": _MIME[self.resource_format],
            "mimetype_inner": None,
            "name": f"311 Service Requests {year}",
            "package_id": self.package_id,
            "position": position,
            "resource_type": None,
            "revision_id": str(uuid.uuid5(_ID_NAMESPACE, f"{rid}/{modified}/{self.resource_format}")),
            "size": size,
            "state": "active",
            "url": url,
            "url_type": None if external else "upload",
        }

    def readme(self, base: str) -> dict:
        return {
            "cache_last_updated": None,
            "cache_url": None,
            "created": _README_MODIFIED,
            "datastore_active": False,
            "format": "XLSX",
            "hash": "",
            "id": README_ID,
            "is_datastore_cache_file": False,
            "is_preview": False,
            "last_modified": _README_MODIFIED,
            "metadata_modified": _README_MODIFIED,
            "mimetype": _MIME["XLSX"],
            "mimetype_inner": None,
            "name": README_NAME,
            "package_id": self.package_id,
            "position": 0,
            "resource_type": None,
            "revision_id": str(uuid.uuid5(_ID_NAMESPACE, f"{README_ID}/{_README_MODIFIED}")),
            "size": None,
            "state": "active",
            "url": f"{base}{DOWNLOAD_PREFIX}{self.package_id}/resource/{README_ID}/download/{README_NAME}.xlsx",
            "url_type": "upload",
        }

    def resources(self, base: str) -> list[dict]:
        """The readme first, then one resource per year, newest first."""
        out = [self.readme(base)]
        for position, year in enumerate(sorted(self.dataset.years(), reverse=True), start=1):
            out.append(self.resource(year, base, position))
        return out

    def package(self, base: str) -> dict:
        resources = self.resources(base)
        return {
            "id": self.package_id,
            "name": self.package_name,
            "title": PACKAGE_TITLE,
            "metadata_modified": max(r["metadata_modified"] for r in resources),
            "num_resources": len(resources),
            "resources": resources,
        }

    def resource_by_id(self, resource_id: str, base: str) -> dict | None:
        if resource_id == README_ID:
            return self.readme(base)
        year = self.year_for_resource(resource_id)
        if year is None:
            return None
        position = sorted(self.dataset.years(), reverse=True).index(year) + 1
        return self.resource(year, base, position)

    # ------------------------------------------------------------ files

    def file(self, year: int, kind: str) -> tuple[bytes, str]:
        return self.dataset.file(year, kind)

    def faulted_file(
        self,
        year: int,
        kind: str,
        malformed: int,
        duplicate: int,
        changes: dict | None = None,
        field: str | None = None,
    ) -> tuple[bytes, str]:
        """The file with fault lines added or its columns changed (a fresh body; its ETag is its own).
        ``changes``: which of empty_month, drop_field, new_field, retype_field fired."""
        changes = changes or {}
        text = self.dataset.csv_bytes(year)
        lines = text.split(b"\r\n")
        trailer = lines.pop() if lines and lines[-1] == b"" else None
        header, data = lines[:1], lines[1:]
        if duplicate and data:
            data = _with_duplicate(data)
        if malformed and data:
            first = data[len(data) // 3]
            extra = first + b","  # one field more than the header
            bad_date = b"not-a-date" + data[(2 * len(data)) // 3][27:]
            data.insert(len(data) // 3 + 1, extra)
            data.insert((2 * len(data)) // 3 + 1, bad_date)
        if changes.get("empty_month"):
            data = []
        if changes.get("drop_field") or changes.get("new_field") or changes.get("retype_field"):
            header, data = _column_faults(header, data, changes, field)
        body = b"\r\n".join(header + data) + (b"\r\n" if trailer is not None else b"")
        if kind == "zip":
            body = build_zip(f"SR{year}.csv", body, self.dataset.last_modified_dt(year))
        return body, etag_for(body)

    # ------------------------------------------------------------ configuration over HTTP

    def configure(self, config: dict) -> dict:
        ds = self.dataset
        settings = {
            "resource_format": self._set_resource_format,
            "size_policy": self._set_size_policy,
            "rows_per_year": ds.set_rows_per_year,
            "current_through": ds.set_current_through,
            "date_quirks": lambda value: ds.set_date_quirks(bool(value)),
            "location_quirks": lambda value: ds.set_location_quirks(bool(value)),
        }
        check_config_keys("toronto_311", config, {*settings, "late_edits", "prebuild"})
        result: dict = {}
        apply_settings(config, settings)
        if "late_edits" in config:
            done = []
            for edit in late_edit_list(config["late_edits"], '{"month": "YYYY-MM", "n": N} (year optional)'):
                month = edit["month"]
                year = edit.get("year")
                if year is None:
                    if not isinstance(month, str):
                        raise ValueError("late_edits: give year with a numeric month")
                    year = int(month[:4])
                rows = ds.apply_late_edits(int(year), month, int(edit.get("n", 1)))
                done.append(
                    {
                        "year": int(year),
                        "month": month,
                        "n": len(rows),
                        "rows": rows,
                        "last_modified": ds.last_modified(int(year)),
                    }
                )
            result["late_edits"] = done
        if config.get("prebuild"):
            for year in ds.years():
                ds.file(year, self.kind())
        return {**self.describe(), **result}

    def describe(self) -> dict:
        ds = self.dataset
        return {
            "package": self.package_name,
            "package_id": self.package_id,
            "seed": ds.seed,
            "rows_per_year": ds.rows_per_year,
            "current_through": ds.current_through,
            "date_quirks": ds.date_quirks,
            "location_quirks": ds.location_quirks,
            "resource_format": self.resource_format,
            "size_policy": self.size_policy,
            "external_years": list(self.external_years),
            "years": [ds.years()[0], ds.years()[-1]],
            "last_modified": {str(y): ds.last_modified(y) for y in ds.years()},
            "edited_months": ds.late_edits(),
        }

    def reset_data(self) -> None:
        self.resource_format, self.size_policy = self._initial
        self.dataset.reset()


NEW_COLUMN = "Service Request Location"  # the contract's possible newer schema names it


def _column_faults(header: list[bytes], data: list[bytes], changes: dict, field: str | None):
    """drop_field / new_field / retype_field over the CSV lines (latin-1, CRLF, minimal quoting)."""
    import csv
    import io

    def split(line: bytes) -> list[str]:
        return next(csv.reader([line.decode("latin-1")]), [])

    def join(values: list[str]) -> bytes:
        out = io.StringIO()
        csv.writer(out, lineterminator="").writerow(values)
        return out.getvalue().encode("latin-1")

    names = split(header[0])
    rows = [split(line) for line in data]
    if changes.get("retype_field"):
        name = field or names[0]
        if name in names:
            at = names.index(name)
            for row in rows:
                value = row[at] if at < len(row) else ""
                if len(value) >= 19 and value[10] == " ":
                    row[at] = value[:10] + "T" + value[11:19] + "." + (value[20:23] or "000").ljust(3, "0")
    if changes.get("new_field"):
        postal = names.index("First 3 Chars of Postal Code") if "First 3 Chars of Postal Code" in names else None
        names = names + [NEW_COLUMN]
        rows = [row + [row[postal] if postal is not None and postal < len(row) else ""] for row in rows]
    if changes.get("drop_field"):
        name = field or "Ward"
        if name in names:
            at = names.index(name)
            names = names[:at] + names[at + 1 :]
            rows = [row[:at] + row[at + 1 :] for row in rows]
    return [join(names)], [join(row) for row in rows]


def _with_duplicate(data: list[bytes]) -> list[bytes]:
    """The first data row again, an hour later (same month), at its sorted place."""
    first = data[0]
    try:
        when = _dt.datetime.strptime(first[:19].decode(), "%Y-%m-%d %H:%M:%S")
    except ValueError:
        return data + [first]
    later = when + _dt.timedelta(hours=1)
    if later.month != when.month:
        later = when
    stamp = later.strftime("%Y-%m-%d %H:%M:%S").encode() + first[19:27]
    dup = stamp + first[27:]
    index = next((i for i in range(1, len(data)) if data[i][:27] > stamp), len(data))
    return data[:index] + [dup] + data[index:]


# ---------------------------------------------------------------- factory


def install_toronto(server, dataset: Toronto311Dataset | None = None, **package_kwargs) -> Toronto311Dataset:
    """Create the Toronto 311 dataset (unless given) and serve it over the CKAN API on ``server``.

    Reuses an installed :class:`CkanApi` if the server has one. Returns the dataset."""
    dataset = dataset if dataset is not None else Toronto311Dataset()
    api = server.apis.get(CkanApi.name)
    if isinstance(api, CkanApi):
        package = TorontoCkanPackage(dataset, **package_kwargs)
        api.add_package(package)
        api.register_config(server, package)
    else:
        api = CkanApi()
        api.add_package(TorontoCkanPackage(dataset, **package_kwargs))
        server.install(api)
    return dataset
