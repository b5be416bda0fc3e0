"""A generic CKAN resource source: one downloadable file (CSV, or a zip holding one CSV) per year.

Owns: the CKAN action API (``package_show`` and its envelope), choosing the block's year's
resource, the streaming download (with retries), streaming zip decompression, decoding, the
column-wise CSV parse, month assignment, validation with quarantine, the derived columns and the
derived key. Nothing here knows a city: the package, the resource naming, the file's encoding, the
columns with their renames, types and cleaning rules, the date column and its format, the splits,
the date bands and the key all come from the dataset file's ``[adapter]`` table (see
``datasets/toronto_311.toml`` for a commented example).

**The year's resource.** ``package_show?id=<package_id>`` lists every resource. The block's year
picks one: active resources whose ``name`` equals ``resource_name`` with ``{year}`` filled in
(compared case-insensitively with runs of spaces collapsed), else whose URL's last path segment
matches the ``resource_url`` regex (``{year}`` filled in); among those, the first of
``resource_formats`` wins (``format``, or the URL's extension when ``format`` is empty), then the
most recently modified. The resource's ``url`` is followed as published (CKAN-hosted or external);
a relative one is joined to the connection's base URL. The connection's password, if any, is sent
as CKAN's ``Authorization`` API token to the CKAN host only, never to an external download host.

**Watermark.** The chosen resource's ``last_modified`` (then ``metadata_modified`` when it is
empty; configurable with ``watermark``). It is per resource, hence per year, so :meth:`probe`
needs the block's month (``run_block`` passes it). A new yearly file re-checks that year's twelve
blocks; the extractor keeps the landed data of the months whose content did not change.

**Download and memory.** The response is read in 1 MiB pieces and never held whole, compressed or
not. A zip (recognised by its ``PK\\x03\\x04`` magic, not by the resource's ``format``) is read
*forward* through its local file headers (``civic_pipelines.core.zipstream``, the project's one zip
reader), the way ``unzip`` reads a pipe: the central directory at
the end is never needed, because a deflate stream marks its own end. The first member whose name
matches ``member`` is inflated in pieces of at most 1 MiB and checked against its CRC-32 and size
(from the local header, or from the data descriptor that follows the data when the writer streamed
it); other members are inflated and discarded. Stored members need their size in the local header;
encrypted members and other methods are refused. Nothing is written to disk. The decoded text is
handed to Arrow's streaming CSV reader in ``read_block_bytes`` blocks (1 MiB by default), and each
Arrow batch is cut down to the block's month straight away. Memory is therefore bounded by Arrow's
read-ahead (at most ~35 blocks, ~35 MiB, measured), a few 1 MiB pieces in flight, and the block's
own month of rows with its intermediate columns, whatever the size of the year file. A body cut short
(connection reset, fewer bytes than ``Content-Length``, a zip member that ends early or fails its
CRC) repeats the whole download and parse (tenacity, as for pages; nothing partial is kept).

**Decoding.** The bytes are decoded with ``encoding`` (Open Data Toronto: ``latin-1``; every byte
is a character, so nothing fails) and re-encoded as UTF-8 for Arrow; pure-ASCII pieces pass
through untouched. A leading UTF-8 byte order mark is removed and then declares the file UTF-8
(decoded with replacement characters for invalid bytes).

**Parsing.** The header line is read here (its names trimmed, BOM-free) and matched to the
configured fields by ``source`` name, then by ``aliases``, exactly first, then ignoring case and
runs of spaces; what is new, missing or renamed is reported as ``drift``, and a required field that
is gone, or one the derived key hashes (without it every row would get a new key, and the
warehouse would count each request twice), raises :class:`SchemaDriftError`. So does a date
column none of whose values in the whole file parses with ``date_format`` (the column's format
changed: that is drift, not a file of bad rows, and landing it would empty the block). Arrow then reads every column as a string (quoted commas
are fields, not separators; ``newlines_in_values`` allows line breaks inside quotes). A line whose
field count differs from the header's (an unquoted comma) is not a crash: Arrow hands it to a
handler that keeps it for quarantine with its text. Values are trimmed (``trim``, default on) and
``null_values`` (default ``[""]``) become null before typing with ``pyarrow.compute``.

The columns' rules live in :mod:`~civic_pipelines.adapters.ckan_fields`; month assignment,
quarantine, derived columns and the key in :mod:`~civic_pipelines.adapters.ckan_block` (whose
docstring spells them out); decoding and the file object Arrow reads in
:mod:`~civic_pipelines.adapters.streamed_text`.
"""

from __future__ import annotations

import codecs
import csv
import logging
import re
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import orjson
import pyarrow as pa
import pyarrow.csv as pacsv

from civic_pipelines.adapters import adapter_config_error as _config_error
from civic_pipelines.adapters import configured_fields
from civic_pipelines.adapters.ckan_block import FileMonths, validate_block
from civic_pipelines.adapters.ckan_fields import (  # noqa: F401 (re-exported: the adapter's names)
    _FLOAT_RE,
    _INT_RE,
    ARROW_TYPES,
    TIMESTAMP_TYPE,
    DateBands,
    Field,
    Split,
    clean_strings,
    fill_year,
    normalised_name,
    parse_timestamps,
    typed,
)
from civic_pipelines.adapters.streamed_text import PiecesReader, Utf8Stream, chain_first, first_bytes
from civic_pipelines.core import contract
from civic_pipelines.core.zipstream import LOCAL_SIGNATURE, FirstMatch, ZipErrors
from civic_pipelines.http import (
    RETRY_STATUSES,
    SourceHTTPError,
    TransientBodyError,
    body_pieces,
    get_bytes,
    page_retry,
    request_timeout,
)
from civic_pipelines.months import parse_month
from civic_pipelines.sources.base import BlockData, SchemaDriftError, SourceSpec

log = logging.getLogger(__name__)

HTTP_CHUNK = 1 << 20  # bytes read from the socket at a time
INFLATE_CHUNK = 1 << 20  # most bytes one inflate step may produce
# Arrow's CSV block (one record batch per block). Arrow's streaming reader runs up to ~35 blocks
# ahead of a slow consumer (measured with pyarrow 26), so this also sets the read-ahead memory.
DEFAULT_BLOCK_BYTES = 1 << 20


class CkanError(SourceHTTPError):
    """CKAN's error envelope, a package without the year's resource, or a file that is not the
    CSV (or zip of a CSV) the dataset file describes."""


# The zip is read by the project's one forward reader; damaged or cut bytes are worth a fresh
# download (TransientBodyError, retried), a member that cannot be read forward is not.
ZIP_ERRORS = ZipErrors(truncated=TransientBodyError, corrupt=TransientBodyError, unsupported=CkanError)


class ZipMemberStream(FirstMatch):
    """Iterate the inflated bytes of the first member whose name matches ``pattern``, reading a
    zip strictly forward (local headers only; see the module docstring)."""

    def __init__(self, pieces: Iterable[bytes], pattern: str) -> None:
        super().__init__(pieces, pattern, errors=ZIP_ERRORS, no_match=CkanError, piece_size=INFLATE_CHUNK)


# ---------------------------------------------------------------- the source


class CkanResourceSource:
    """A source (``SPEC``, ``auth_headers``, ``probe``, ``extract_block``) over yearly CKAN files."""

    KEYS = {
        "package_id",
        "action_path",
        "resource_name",
        "resource_url",
        "resource_formats",
        "watermark",
        "member",
        "encoding",
        "date_field",
        "date_format",
        "date_fraction_digits",
        "newlines_in_values",
        "read_block_bytes",
        "key",
        "fields",
        "splits",
        "date_bands",
    }

    def __init__(self, spec: SourceSpec, config: dict, path: Path) -> None:
        self.SPEC = spec
        self.path = Path(path)
        unknown = set(config) - self.KEYS
        if unknown:
            raise _config_error(self.path, f"unknown key(s) {sorted(unknown)}; known: {sorted(self.KEYS)}")
        self.package_id = str(config.get("package_id") or "")
        if not self.package_id:
            raise _config_error(self.path, "package_id is required (the CKAN package name or id)")
        self.action_path = "/" + str(config.get("action_path") or "/api/3/action/").strip("/") + "/"
        self.resource_name = config.get("resource_name")
        self.resource_url = config.get("resource_url")
        if not self.resource_name and not self.resource_url:
            raise _config_error(self.path, "resource_name or resource_url (with {year}) is required")
        for key in ("resource_name", "resource_url"):
            value = config.get(key)
            if value and "{year}" not in value:
                raise _config_error(self.path, f"{key} {value!r} needs a {{year}} placeholder")
        if self.resource_url:
            try:
                re.compile(fill_year(self.resource_url, 2000))
            except re.error as error:
                raise _config_error(self.path, f"resource_url is not a regex ({error})") from None
        self.resource_formats = [str(f).upper() for f in config.get("resource_formats") or ["ZIP", "CSV"]]
        watermark = config.get("watermark") or ["last_modified", "metadata_modified"]
        self.watermark_keys = [watermark] if isinstance(watermark, str) else [str(w) for w in watermark]
        self.member = str(config.get("member") or r"(?i)\.csv$")
        try:
            re.compile(fill_year(self.member, 2000))
        except re.error as error:
            raise _config_error(self.path, f"member is not a regex ({error})") from None
        self.encoding = str(config.get("encoding") or "utf-8")
        try:
            codecs.lookup(self.encoding)
        except LookupError:
            raise _config_error(self.path, f"unknown encoding {self.encoding!r}") from None
        self.date_format = str(config.get("date_format") or "%Y-%m-%d %H:%M:%S")
        self.fraction_digits = int(config.get("date_fraction_digits", 9))
        if not 0 <= self.fraction_digits <= 9:
            raise _config_error(self.path, "date_fraction_digits must be 0..9")
        self.newlines_in_values = bool(config.get("newlines_in_values", False))
        self.block_bytes = int(config.get("read_block_bytes", DEFAULT_BLOCK_BYTES))

        self.fields, self.by_source = configured_fields(
            config.get("fields"), self.path, lambda table: Field(table, self.path, self.date_format)
        )
        names = [field.name for field in self.fields]
        date_source = config.get("date_field")
        if date_source not in self.by_source or self.by_source[date_source].type != "timestamp":
            raise _config_error(self.path, f"date_field {date_source!r} must be one of the fields, with type timestamp")
        self.date_field = self.by_source[date_source]
        self.date_field.required = True
        if self.date_field.format != self.date_format:
            raise _config_error(self.path, "the date field's format is date_format")
        fraction_ok = self.fraction_digits  # the date field honours date_fraction_digits
        self.date_args = (self.date_format, self.date_field.width, fraction_ok)

        key = config.get("key")
        if isinstance(key, str):
            if key not in self.by_source:
                raise _config_error(self.path, f"key {key!r} is not among the fields' sources")
            self.key_field, self.key_name, self.hash_of = self.by_source[key], self.by_source[key].name, []
            self.key_field.required = True
        elif isinstance(key, dict):
            if set(key) - {"name", "hash_of"} or not key.get("name") or not key.get("hash_of"):
                raise _config_error(self.path, "key as a table takes name and hash_of (field sources)")
            missing = [s for s in key["hash_of"] if s not in self.by_source]
            if missing:
                raise _config_error(self.path, f"key hash_of: {missing} not among the fields' sources")
            self.key_field, self.key_name = None, str(key["name"])
            self.hash_of = [self.by_source[s] for s in key["hash_of"]]
            if self.key_name in names:
                raise _config_error(self.path, f"key name {self.key_name!r} is also a field's name")
        else:
            raise _config_error(self.path, "key is required: a field source, or {name, hash_of}")
        if spec.natural_key != self.key_name:
            raise _config_error(
                self.path, f"[source] natural_key {spec.natural_key!r} must be the key's lake name {self.key_name!r}"
            )

        self.splits = [Split(table, self.path, self.by_source) for table in config.get("splits") or []]
        self.bands = [DateBands(table, self.path, self.by_source) for table in config.get("date_bands") or []]
        self.required = [f for f in self.fields if f.required and f is not self.date_field]

        columns: list[tuple[str, pa.DataType]] = [] if self.key_field else [(self.key_name, pa.string())]
        for field in self.fields:
            columns.append((field.name, field.arrow_type))
            for split in self.splits:
                if split.field is field:
                    columns.extend((group, ARROW_TYPES[kind]) for group, kind in split.outputs)
        columns.extend((band.name, pa.string()) for band in self.bands)
        lake_names = [name for name, _ in columns]
        if len(set(lake_names)) != len(lake_names):
            raise _config_error(self.path, f"lake column names collide: {lake_names}")
        self.data_schema = contract.data_schema(columns)
        self.quarantine_schema = contract.quarantine_schema(
            [(field.name, pa.string()) for field in self.fields] + [("_raw_line", pa.string())]
        )

    def __repr__(self) -> str:
        return f"CkanResourceSource({self.SPEC.name!r}, {self.path.name})"

    # ------------------------------------------------------------ CKAN metadata

    def auth_headers(self, connection) -> dict:
        # Public portals need nothing; a CKAN API token goes in its Authorization header.
        return {"Authorization": connection.password} if connection.password else {}

    def action_url(self, connection, action: str) -> str:
        return f"{connection.base_url.rstrip('/')}{self.action_path}{action}"

    def package(self, session, connection) -> dict:
        url = self.action_url(connection, "package_show")
        body = get_bytes(session, url, params={"id": self.package_id})
        try:
            envelope = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise CkanError(f"{url}: expected CKAN's JSON envelope, got {body[:120]!r}") from None
        if (
            not isinstance(envelope, dict)
            or envelope.get("success") is not True
            or not isinstance(envelope.get("result"), dict)
        ):
            error = envelope.get("error") if isinstance(envelope, dict) else None
            raise CkanError(f"{url} id={self.package_id}: CKAN error {error or body[:200]!r}")
        return envelope["result"]

    @staticmethod
    def _format_of(resource: dict) -> str:
        fmt = str(resource.get("format") or "").strip().upper()
        if fmt:
            return fmt
        tail = urlsplit(str(resource.get("url") or "")).path.rsplit(".", 1)
        return tail[1].upper() if len(tail) == 2 else ""

    def select_resource(self, resources: list[dict], year: int) -> dict:
        """The year's resource (see the module docstring); :class:`CkanError` when there is none."""
        active = [r for r in resources if isinstance(r, dict) and r.get("state", "active") == "active"]
        candidates = []
        if self.resource_name:
            wanted = normalised_name(fill_year(self.resource_name, year))
            candidates = [r for r in active if normalised_name(r.get("name") or "") == wanted]
        if not candidates and self.resource_url:
            pattern = re.compile(fill_year(self.resource_url, year))
            candidates = [
                r for r in active if pattern.search(urlsplit(str(r.get("url") or "")).path.rsplit("/", 1)[-1])
            ]
        candidates = [r for r in candidates if self._format_of(r) in self.resource_formats]
        if not candidates:
            names = ", ".join(sorted(str(r.get("name")) for r in active))
            raise CkanError(
                f"{self.package_id}: no {'/'.join(self.resource_formats)} resource for {year} (resources: {names})"
            )
        candidates.sort(key=lambda r: (self.resource_formats.index(self._format_of(r)), _negated(self.watermark_of(r))))
        if len(candidates) > 1:
            log.warning(
                "%s: %d resources for %s; using %s", self.SPEC.name, len(candidates), year, candidates[0].get("name")
            )
        return candidates[0]

    def watermark_of(self, resource: dict) -> str:
        for key in self.watermark_keys:
            value = resource.get(key)
            if value not in (None, ""):
                return str(value)
        return ""

    def probe(
        self, session, connection, month: str | None = None, part: str | None = None, previous: dict | None = None
    ) -> dict:
        """The block's year's resource and its watermark (one ``package_show`` call).

        Files are per year, so the month is needed; ``run_block`` passes it."""
        if month is None:
            raise TypeError(f"{self.SPEC.name}: CKAN files are per year, so probe() needs month='YYYY-MM'")
        year = parse_month(month).year
        package = self.package(session, connection)
        resource = self.select_resource(package.get("resources") or [], year)
        watermark = self.watermark_of(resource)
        if not watermark:
            raise CkanError(f"{self.package_id}: resource {resource.get('name')!r} has none of {self.watermark_keys}")
        return {
            "watermark": watermark,
            "drift": {},  # the header is inside the file: extract_block fills this in
            "year": year,
            "resource": {
                "id": resource.get("id"),
                "name": resource.get("name"),
                "url": resource.get("url"),
                "format": self._format_of(resource),
                "size": resource.get("size"),
                "last_modified": resource.get("last_modified"),
                "metadata_modified": resource.get("metadata_modified"),
            },
        }

    # ------------------------------------------------------------ download

    def download_url(self, connection, resource: dict) -> str:
        url = str(resource.get("url") or "")
        if not url:
            raise CkanError(f"{self.package_id}: resource {resource.get('name')!r} has no url")
        return url if "://" in url else urljoin(connection.base_url.rstrip("/") + "/", url.lstrip("/"))

    def _stream(self, session, connection, url: str, consume):
        """GET ``url`` streaming and hand the body's pieces to ``consume``; a body cut short
        repeats the whole request and ``consume`` (it must keep no state between attempts)."""
        same_host = urlsplit(url).netloc == urlsplit(connection.base_url).netloc
        headers = None if same_host else {"Authorization": None}  # never send the CKAN token elsewhere

        @page_retry
        def attempt():
            response = session.get(url, stream=True, timeout=request_timeout(), headers=headers)
            with response:
                if (
                    response.status_code >= 400
                    or response.status_code in RETRY_STATUSES
                    and response.status_code != 200
                ):
                    snippet = response.raw.read(300, decode_content=True) or b""
                    raise CkanError(f"{response.status_code} from {url}: {snippet.decode('utf-8', 'replace')}")
                counter = {"bytes": 0}
                return consume(body_pieces(response, counter, HTTP_CHUNK), counter)

        return attempt()

    # ------------------------------------------------------------ parse one year file

    def read_file(
        self, pieces: Iterable[bytes], month: str, landed_at: datetime, counter: dict | None = None
    ) -> BlockData:
        """Read one year file (a zip of a CSV, or a CSV) from byte pieces and keep ``month``.

        ``stats`` carry ``drift`` (from the header) and the file's counts; the block's
        quarantine holds its month's share of the year's broken lines."""
        started = time.monotonic()
        year = parse_month(month).year
        first, pieces = first_bytes(pieces, 4)
        member = None
        source: Iterable[bytes] = chain_first(first, pieces)
        if first.startswith(LOCAL_SIGNATURE):
            member = ZipMemberStream(source, fill_year(self.member, year))
            source = member
        text = Utf8Stream(source, self.encoding)
        reader = PiecesReader(text)
        header_bytes = reader.header_line()
        if not header_bytes.strip():
            raise CkanError(f"{self.SPEC.name}: the {year} file is empty (no header line)")
        header = next(csv.reader([header_bytes.decode("utf-8").rstrip("\r")]))
        header = [name.replace("\ufeff", "").strip() for name in header]
        positions, drift = self.match_header(header)
        state = FileMonths(year, month)
        malformed: list[tuple[int, int, str]] = []

        def on_invalid(row) -> str:
            malformed.append((row.expected_columns, row.actual_columns, row.text))
            return "skip"

        column_names = [f"c{i}" for i in range(len(header))]
        # A header and no line (a year file published before its first row): Arrow refuses an
        # empty stream, so there are simply no batches.
        batches = (
            []
            if reader.at_end()
            else pacsv.open_csv(
                reader,
                read_options=pacsv.ReadOptions(
                    column_names=column_names, block_size=self.block_bytes, use_threads=True
                ),
                parse_options=pacsv.ParseOptions(
                    newlines_in_values=self.newlines_in_values, invalid_row_handler=on_invalid
                ),
                convert_options=pacsv.ConvertOptions(
                    column_types={name: pa.string() for name in column_names},
                    strings_can_be_null=False,
                    quoted_strings_can_be_null=False,
                ),
            )
        )
        kept: list[pa.Table] = []
        file_rows = 0
        for batch in batches:
            file_rows += batch.num_rows
            raw = self.raw_table(batch, positions)
            keep = state.assign(raw[self.date_field.name], self)
            if contract.count_true(keep):
                kept.append(raw.filter(keep))
        if state.unparsed and not state.parsed:
            raise SchemaDriftError(
                f"{self.SPEC.name}: none of the {state.unparsed} {self.date_field.source} values of the {year} file "
                f"parses as {self.date_format} (first: {state.example!r}): the column's format changed; nothing landed"
            )
        lines = [line for line in malformed if self.line_month(line[2], positions, year) == month]
        raw = pa.concat_tables(kept) if kept else self.raw_schema().empty_table()
        good, quarantine, stats = validate_block(self, raw, lines, month, year, landed_at)
        seconds = time.monotonic() - started
        stats.update(
            {
                "zip_member": member.name if member is not None else None,
                "encoding": "utf-8 (BOM)" if text.bom else text.encoding,
                "file_text_bytes": text.bytes_in,
                "file_rows": file_rows,
                "file_malformed_lines": len(malformed),
                "drift": drift,
                "parse_seconds": round(seconds, 3),
                "rows_per_second": round((file_rows + len(malformed)) / seconds) if seconds > 0 else None,
            }
        )
        if counter is not None:
            stats["fetched_bytes"] = counter["bytes"]
        return BlockData(data=good, quarantine=quarantine, stats=stats)

    def match_header(self, header: list[str]) -> tuple[dict, dict]:
        """Field lake name -> column position, and the drift against the configured fields."""
        positions, renamed, missing = {}, {}, []
        exact = {name: i for i, name in reversed(list(enumerate(header)))}
        loose = {normalised_name(name): i for i, name in reversed(list(enumerate(header)))}
        for field in self.fields:
            candidates = [field.source] + field.aliases
            found = next((exact[c] for c in candidates if c in exact), None)
            if found is None:
                found = next((loose[normalised_name(c)] for c in candidates if normalised_name(c) in loose), None)
            if found is None:
                missing.append(field.source)
                continue
            positions[field.name] = found
            if header[found] != field.source:
                renamed[field.source] = header[found]
        used = set(positions.values())
        drift = {"new_fields": [name for i, name in enumerate(header) if i not in used], "missing_fields": missing}
        if renamed:
            drift["renamed"] = renamed
        gone = [f.source for f in [self.date_field] + self.required if f.source in missing]
        if gone:
            raise SchemaDriftError(
                f"{self.SPEC.name}: required field(s) gone from the file's header: {', '.join(gone)}"
            )
        keyed = [f.source for f in self.hash_of if f.source in missing]
        if keyed:
            raise SchemaDriftError(
                f"{self.SPEC.name}: field(s) {', '.join(keyed)} that the key {self.key_name} hashes are gone from the "
                "file's header: every row would get a new key; nothing landed (map the new header with aliases)"
            )
        if drift["new_fields"] or missing or renamed:
            log.warning("%s schema drift: %s", self.SPEC.name, drift)
        return positions, drift

    def raw_schema(self) -> pa.Schema:
        return pa.schema([(field.name, pa.string()) for field in self.fields])

    def raw_table(self, batch: pa.RecordBatch, positions: dict) -> pa.Table:
        """The configured fields as published strings (a missing optional field: nulls)."""
        arrays = [
            batch.column(positions[field.name]) if field.name in positions else pa.nulls(batch.num_rows, pa.string())
            for field in self.fields
        ]
        return pa.Table.from_arrays(arrays, schema=self.raw_schema())

    def line_month(self, text: str, positions: dict, year: int) -> str:
        """The block of a line with the wrong field count: by its date field, else January."""
        try:
            fields = next(csv.reader([text]))
        except (csv.Error, StopIteration):
            fields = []
        position = positions.get(self.date_field.name)
        value = fields[position] if position is not None and position < len(fields) else None
        values = clean_strings(pa.array([value], pa.string()), self.date_field)
        state = FileMonths(year, None)
        return state.months(values, self)[0].as_py()

    # ------------------------------------------------------------ the block

    def extract_block(
        self, session, connection, month: str, probed: dict, landed_at: datetime | None = None, **_runner_keywords
    ) -> BlockData:
        """One month's block (the runner's keywords beyond ``landed_at`` do not concern this adapter)."""
        landed_at = landed_at or datetime.now(UTC)
        if probed.get("year") != parse_month(month).year or "resource" not in probed:
            probed = {**probed, **self.probe(session, connection, month=month)}
        resource = probed["resource"]
        url = self.download_url(connection, resource)
        started = time.monotonic()
        block = self._stream(
            session, connection, url, lambda pieces, counter: self.read_file(pieces, month, landed_at, counter)
        )
        seconds = time.monotonic() - started
        probed["drift"] = block.stats.pop("drift")
        block.stats = {
            "resource_id": resource.get("id"),
            "resource_name": resource.get("name"),
            "resource_format": resource.get("format"),
            "download_url": url,
            **block.stats,
            "download_parse_seconds": round(seconds, 3),
            "drift": probed["drift"],
        }
        return block


def _negated(text: str) -> tuple:
    # Sort key for "most recent first" on ISO timestamps without parsing them.
    return tuple(-ord(c) for c in text)
