"""DfT Street Manager (England) monthly open-data archives for the replay server: a generator of
archives of any size, and the S3-like endpoints that serve them.

Paths are the real ones after the host (``https://opendata.manage-roadworks.service.gov.uk``)::

    GET|HEAD /{type}/{YYYY}/{MM}.zip      type: permit, activity, section_58

Answers, as S3 answers for an object: ``Content-Length``, ``ETag`` (the MD5 of the body, quoted),
``Last-Modified``, ``Accept-Ranges: bytes``; one byte range per request (206, ``Content-Range``;
416 when unsatisfiable; ``If-Range``), ``If-None-Match`` (304) and ``If-Match`` (412). A month
that is not published (after the latest published month, or before July 2020) is a 404 with S3's
``NoSuchKey`` XML body. The route is ``faultable``: the core's ``status_429``/``503`` and
``reset_mid_page`` (half the body, then a TCP reset) apply to it.

**The archive** (see ``../../../shared/contracts/street_manager.md``): one deflated JSON member
per event, compact, ``event_reference`` first, the event envelope with ``object_data`` holding the
type's fields in the contract's order and with its vocabularies. It reproduces the DfT defect:
the local file headers and the data are valid, but the end-of-central-directory record gives
the central directory's size and offset as if every entry were 46 bytes (the file names left
out) and counts its entries modulo 65,536 with no ZIP64 record, so Python's ``zipfile`` (which
locates the directory from those two fields) fails with ``Bad magic number for central
directory``. Readers must walk the local headers forward (as the extractor does).
``central_directory="valid"`` writes a correct directory (ZIP64 when needed), for comparison.

**Quirks** (rates are configurable, see :class:`Quirks`): event types published as
``WORK_START``, ``work-start`` or ``Work Start`` (any type can take the lower-hyphen or title
spelling), ``CURRENT_TRAFFIC_MANAGEMENT_TYPE_UPDATED`` beside
``CURRENT_TRAFFIC_MANAGEMENT_UPDATED``; ``proposed_start_time`` as a bare ``"13:50"`` in some
events (an ISO instant in the others); an unknown field added to ``object_data`` without notice;
coordinates missing (null or ``""``; more often for Major and Standard works), otherwise British
National Grid WKT points, linestrings and polygons; ``area_name`` ``""``; ``is_covid_19_response``
null from 2025; dates as UTC instants of UK-local day boundaries; the 26-key field set of the
2020 docs example before 2021 (without ``permit_conditions`` and what follows);
``collaboration_type`` only on collaborative works; a few events of the DfT smoke-test promoter
``STPR`` on "Fake Street". ``bad_members`` adds contract-breaking members (not JSON, not an
object, no permit reference, an unreadable ``event_time``, a repeated ``event_reference``) for
the extractor's quarantine; the real archives are not known to have them.

**Vocabularies.** Work categories, work, permit and traffic-management statuses and refs,
``close_footway``, permit conditions (NCT codes), road categories, event types and the
``4420`` Sheffield / ``5990`` Westminster authorities are the contract's. The contract names no
other authority or promoter, so the rest are synthetic and say so (``REPLAY HIGHWAY AUTHORITY
9101``, ``REPLAY WATER 9201``, ...); the display forms of traffic-management refs the contract
does not spell out (e.g. ``two_way_signals``) are written in the style of the ones it does.
Member names are not documented; ``<object_reference>_<event_reference>.json`` is used and no
reader should rely on it.

**Sizes and memory.** :func:`iter_archive` yields the zip as a stream of byte pieces (the central
directory entries are spooled to a temporary file once past 16 MB), so an archive of any size is
generated in bounded memory; a permit month of the real size (about 1.1 million events) comes to
roughly 1 GB. The server keeps small archives in memory and writes large ones once to its cache
folder (``cache_dir``, default a temporary folder), then serves them from there, with ranges.

**Fault switches** (``POST /_replay/faults``; the core's ``status_*``, ``delay`` and
``reset_mid_page`` apply to the route as to any other). This module implements the data faults
as changes of the *published object*: while one is pending, a ``HEAD`` (or a ranged ``GET``)
describes the faulted archive, and a full ``GET`` serves it and takes one from the count, so the
``ETag`` and ``Content-Length`` of the probe and the download agree, as they would if DfT had
published the faulted file::

    empty_month       an archive with no members (a valid, empty zip)
    malformed_row     three more members that break the contract: one without
                      ``event_reference`` (the natural key), one whose ``event_time`` does not
                      parse (the two the core names) and one that is not JSON (cut mid-document)
    drop_field        every event loses one field (``fault_options.drop_field``; default the
                      part's reference number, the field a reader needs most)
    new_field         every event's ``object_data`` gains a field the contract lacks
                      (``fault_options.new_field``, default ``replay_new_field``); DfT adds
                      fields without notice (contract, *Quirks*)
    retype_field      one field changes JSON type in every event (``fault_options.retype_field``,
                      default ``usrn``: a string of digits published as a number, as the SNS
                      attributes type it); a number becomes text
    truncate_archive  the archive ends inside a member, with no central directory (a complete
                      HTTP response of a truncated file; the contract reports a truncated month)
    corrupt_archive   garbage in the middle: ``fault_options.corrupt`` ``"member"`` (default)
                      overwrites 16 bytes of the compressed data of the middle member (its CRC-32
                      then fails, or it does not inflate); ``"between"`` inserts 64 bytes that
                      are neither a member nor the central directory after it

Configuration (``POST /_replay/config``), section ``street_manager``::

    {"events_per_month": 500}                       every type (or {"permit": 500, "activity": 50})
    {"today": "2026-10-04"}                         the latest published month is the previous one
    {"latest_month": "2024-03"}                     ... or name it (null: from "today")
    {"truncate": true}                              serve every archive cut short (or a list of
                                                    "permit/2024-03" keys)
    {"late_edit": {"permit/2024-03": 1}}            republish a month: revision n changes some
                                                    events, adds n*5, moves Last-Modified and ETag
    {"quirks": {"bare_time_rate": 0.5, ...}}        see Quirks
    {"central_directory": "valid"}                  a readable central directory ("corrupt": DfT's)
    {"fault_options": {"drop_field": "street_name"}} details of the data faults (see above):
                                                    drop_field, new_field, retype_field, corrupt
    {"seed": 7}, {"cache_dir": "/path"}
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import os
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass

from civic_pipelines.replay import horizon
from civic_pipelines.replay.street_manager_data import (  # noqa: F401 - re-exported: the names' old import path
    _MEMORY_LIMIT,
    _PIECE,
    ACTIVITY_EVENT_TYPES,
    ACTIVITY_TYPES,
    AREAS,
    AUTHORITIES,
    AUTHORITY_WEIGHTS,
    CLOSE_FOOTWAY,
    COVID_NULL_FROM,
    DEFAULT_EVENTS,
    EVENT_TYPES,
    FAULT_OPTIONS,
    FIRST_MONTH,
    GENERATOR_VERSION,
    LIFECYCLES,
    LOCATION_TYPES,
    MODULE_FAULTS,
    OBJECT_TYPES,
    PERMIT_ACTIVITY_TYPES,
    PERMIT_CONDITIONS,
    PERMIT_EVENT_TYPES,
    PERMIT_FIELDS_2020,
    PERMIT_FIELDS_LATER,
    PREFIX_FIELDS,
    REAL_PERMIT_EVENTS,
    REFERENCE_FIELDS,
    S58_DURATION,
    S58_EXTENT,
    S58_STATUS,
    SALT,
    SECTION_58_EVENT_TYPES,
    STREETS,
    TEST_PROMOTER,
    TM_WEIGHTS,
    TRAFFIC_MANAGEMENT,
    TYPES,
    UTILITIES,
    WORK_CATEGORIES,
    WORK_STATUS,
    ArchiveSpec,
    Quirks,
    _month_parts,
    archive_events,
    build_archive,
    iter_archive,
    iter_members,
    month_index,
)
from civic_pipelines.sources.street_manager.contract import (  # noqa: F401 - re-exported: the names' old import path
    ACTIVITY_FIELDS,
    ENVELOPE_FIELDS,
    OBJECT_FIELDS,
    PERMIT_FIELDS,
    SECTION_58_FIELDS,
)

# ---------------------------------------------------------------- serving


def _http_date(value: _dt.datetime) -> str:
    from email.utils import format_datetime

    return format_datetime(value.astimezone(_dt.UTC).replace(microsecond=0), usegmt=True)


@dataclass
class _Stored:
    """One materialised archive: in memory (``data``) or in a file (``path``)."""

    size: int
    etag: str
    data: bytes | None = None
    path: str | None = None

    def pieces(self, start: int = 0, end: int | None = None, piece_size: int = _PIECE) -> Iterator[bytes]:
        end = self.size - 1 if end is None else end
        if self.data is not None:
            for at in range(start, end + 1, piece_size):
                yield self.data[at : min(end + 1, at + piece_size)]
            return
        with open(self.path, "rb") as handle:
            handle.seek(start)
            left = end + 1 - start
            while left > 0:
                piece = handle.read(min(piece_size, left))
                if not piece:
                    break
                left -= len(piece)
                yield piece


class StreetManagerArchives:
    """The replay's Street Manager host: configuration, what is published, and the archives."""

    name = "street_manager"
    _DEFAULTS = {
        "events_per_month": None,
        "today": None,
        "latest_month": None,
        "truncate": False,
        "late_edit": {},
        "quirks": {},
        "central_directory": "corrupt",
        "seed": 20240101,
        "cache_dir": None,
        "fault_options": {},
    }

    def __init__(self, cache_dir: str | None = None) -> None:
        self._lock = threading.Lock()
        self._key_locks: dict[str, threading.Lock] = {}
        self._memory: OrderedDict[str, _Stored] = OrderedDict()
        self._tmp: tempfile.TemporaryDirectory | None = None
        self._default_cache_dir = cache_dir
        self.reset()

    # ------------------------------------------------------------ configuration

    def reset(self) -> None:
        self.config = {
            **self._DEFAULTS,
            "late_edit": {},
            "quirks": {},
            "cache_dir": self._default_cache_dir,
            "fault_options": {},
        }
        self.quirks = Quirks()

    def configure(self, section: dict) -> dict:
        unknown = set(section) - set(self._DEFAULTS)
        if unknown:
            raise ValueError(f"street_manager: unknown key(s) {sorted(unknown)}; known: {sorted(self._DEFAULTS)}")
        config = {**self.config}
        if "events_per_month" in section:
            value = section["events_per_month"]
            if isinstance(value, dict):
                bad = set(value) - set(TYPES)
                if bad or any(not isinstance(v, int) or v < 0 for v in value.values()):
                    raise ValueError(f"events_per_month per type: {', '.join(TYPES)} -> count >= 0")
            elif value is not None and (not isinstance(value, int) or value < 0):
                raise ValueError("events_per_month is a count >= 0, a {type: count} object or null")
            config["events_per_month"] = value
        for name in ("today",):
            if name in section:
                value = section[name]
                if value is not None:
                    _dt.date.fromisoformat(value)
                config[name] = value
        if "latest_month" in section:
            value = section["latest_month"]
            if value is not None:
                _month_parts(value)
                _dt.date(*_month_parts(value), 1)
            config["latest_month"] = value
        if "truncate" in section:
            value = section["truncate"]
            if not isinstance(value, (bool, list)):
                raise ValueError('truncate is true/false or a list of "type/YYYY-MM" keys')
            config["truncate"] = value
        if "late_edit" in section:
            value = section["late_edit"] or {}
            if isinstance(value, list):
                value = {key: 1 for key in value}
            for key, revision in value.items():
                self._split_key(key)
                if not isinstance(revision, int) or revision < 0:
                    raise ValueError("late_edit revisions are integers >= 0")
            config["late_edit"] = dict(value)
        if "quirks" in section:
            self.quirks = Quirks.from_config(section["quirks"] or {})
            config["quirks"] = dict(section["quirks"] or {})
        if "central_directory" in section:
            if section["central_directory"] not in ("corrupt", "valid"):
                raise ValueError("central_directory is 'corrupt' or 'valid'")
            config["central_directory"] = section["central_directory"]
        if "seed" in section:
            config["seed"] = int(section["seed"])
        if "cache_dir" in section:
            config["cache_dir"] = section["cache_dir"]
        if "fault_options" in section:
            options = dict(section["fault_options"] or {})
            unknown = set(options) - set(FAULT_OPTIONS)
            if unknown:
                raise ValueError(f"fault_options: unknown key(s) {sorted(unknown)}; known: {sorted(FAULT_OPTIONS)}")
            if options.get("corrupt", "member") not in ("member", "between"):
                raise ValueError("fault_options.corrupt is 'member' or 'between'")
            for name in ("drop_field", "new_field", "retype_field"):
                if name in options and options[name] is not None and not isinstance(options[name], str):
                    raise ValueError(f"fault_options.{name} is a field name")
            config["fault_options"] = options
        self.config = config
        return self.describe()

    def describe(self) -> dict:
        return {**self.config, "latest_published": self.latest_month(), "first_month": FIRST_MONTH}

    @staticmethod
    def _split_key(key: str) -> tuple[str, str]:
        kind, _, month = str(key).partition("/")
        if kind not in TYPES or len(month) != 7:
            raise ValueError(f'archive key {key!r}: "type/YYYY-MM" with type one of {", ".join(TYPES)}')
        _dt.date(*_month_parts(month), 1)
        return kind, month

    def today(self) -> _dt.date:
        value = self.config.get("today")
        return _dt.date.fromisoformat(value) if value else horizon.today()

    def latest_month(self) -> str:
        """The latest published month: configured, or the calendar month before ``today``."""
        if self.config.get("latest_month"):
            return self.config["latest_month"]
        today = self.today()
        year, month = (today.year, today.month - 1) if today.month > 1 else (today.year - 1, 12)
        return f"{year:04d}-{month:02d}"

    def published(self, month: str) -> bool:
        return FIRST_MONTH <= month <= self.latest_month()

    def events_for(self, kind: str) -> int:
        value = self.config.get("events_per_month")
        if isinstance(value, dict):
            return value.get(kind, DEFAULT_EVENTS[kind])
        return DEFAULT_EVENTS[kind] if value is None else value

    def spec(self, kind: str, month: str, faults: tuple = ()) -> ArchiveSpec:
        """The archive published for (kind, month); ``faults``: the data faults it carries."""
        truncate = self.config.get("truncate")
        truncated = truncate is True or (isinstance(truncate, list) and f"{kind}/{month}" in truncate)
        events = self.events_for(kind)
        revision = self.config["late_edit"].get(f"{kind}/{month}", 0)
        options = tuple(sorted(self.config.get("fault_options", {}).items())) if faults else ()
        return ArchiveSpec(
            type=kind,
            month=month,
            events=events,
            seed=self.config["seed"],
            revision=revision,
            quirks=self.quirks,
            central_directory=self.config["central_directory"],
            truncate=truncated,
            faults=tuple(faults),
            fault_options=options,
        )

    def last_modified(self, spec: ArchiveSpec) -> _dt.datetime:
        """Published on the 1st of the next month, 03:00 UTC; a late edit a day later per revision."""
        year, month = _month_parts(spec.month)
        year, month = (year + (month == 12), month % 12 + 1)
        return _dt.datetime(year, month, 1, 3, 0, tzinfo=_dt.UTC) + _dt.timedelta(days=spec.revision)

    # ------------------------------------------------------------ archives

    def _cache_dir(self) -> str:
        if self.config.get("cache_dir"):
            os.makedirs(self.config["cache_dir"], exist_ok=True)
            return self.config["cache_dir"]
        with self._lock:
            if self._tmp is None:
                self._tmp = tempfile.TemporaryDirectory(prefix="street-manager-replay-")
            return self._tmp.name

    def materialize(self, spec: ArchiveSpec) -> _Stored:
        """The archive's bytes, generated once: small ones in memory, large ones in the cache folder."""
        key = spec.key
        with self._lock:
            stored = self._memory.get(key)
            if stored is not None:
                self._memory.move_to_end(key)
                return stored
            key_lock = self._key_locks.setdefault(key, threading.Lock())
        with key_lock:
            with self._lock:
                if key in self._memory:
                    return self._memory[key]
            folder = self._cache_dir()
            path = os.path.join(folder, f"{spec.type}-{spec.month}-{key}.zip")
            if os.path.exists(path) and os.path.exists(path + ".md5"):
                with open(path + ".md5") as handle:
                    etag = handle.read().strip()
                stored = _Stored(size=os.path.getsize(path), etag=etag, path=path)
            else:
                stored = self._generate(spec, path)
            with self._lock:
                self._memory[key] = stored
                self._memory.move_to_end(key)
                in_memory = [k for k, v in self._memory.items() if v.data is not None]
                while len(in_memory) > 48:
                    self._memory.pop(in_memory.pop(0), None)
            return stored

    def _generate(self, spec: ArchiveSpec, path: str) -> _Stored:
        digest = hashlib.md5(usedforsecurity=False)
        pieces: list[bytes] = []
        size = 0
        handle = None
        temp = f"{path}.{os.getpid()}.{threading.get_ident()}.tmp"
        try:
            for piece in iter_archive(spec):
                digest.update(piece)
                size += len(piece)
                if handle is None:
                    pieces.append(piece)
                    if size > _MEMORY_LIMIT:  # too big for memory: spill to the cache file
                        handle = open(temp, "wb")
                        for held in pieces:
                            handle.write(held)
                        pieces = []
                else:
                    handle.write(piece)
            etag = f'"{digest.hexdigest()}"'
            if handle is None:
                return _Stored(size=size, etag=etag, data=b"".join(pieces))
            handle.close()
            handle = None
            os.replace(temp, path)
            with open(path + ".md5", "w") as marker:
                marker.write(etag)
            return _Stored(size=size, etag=etag, path=path)
        finally:
            if handle is not None:
                handle.close()
            if os.path.exists(temp):
                os.unlink(temp)

    def archive(self, kind: str, month: str, faults: tuple = ()) -> tuple[ArchiveSpec, _Stored]:
        spec = self.spec(kind, month, faults)
        return spec, self.materialize(spec)

    @staticmethod
    def pending_faults(request) -> tuple:
        """The data faults the answer carries: a full GET takes one of each pending fault (a
        download); a HEAD or a ranged GET only looks, so it describes the object the next
        download gets."""
        faults = request.state.faults
        takes = request.method == "GET" and not request.headers.get("range")
        return tuple(name for name in MODULE_FAULTS if (faults.take(name) if takes else faults.get(name)))

    # ------------------------------------------------------------ HTTP

    def install(self, server) -> None:
        from civic_pipelines.replay.http_stream import enable_streaming

        enable_streaming(server)
        for kind in TYPES:
            server.add_route(f"/{kind}/", self.handle, methods=("GET", "HEAD"), faultable=True)
        server.add_config_handler(self.name, self.configure, self.describe)
        server.add_data_reset_hook(self.reset)

    def handle(self, request):
        from civic_pipelines.replay.http_stream import StreamedResponse, if_range_ok, range_answer
        from civic_pipelines.replay.server import Response

        parts = request.path.strip("/").split("/")
        if (
            len(parts) != 3
            or parts[0] not in TYPES
            or not parts[1].isdigit()
            or len(parts[1]) != 4
            or len(parts[2]) != 6
            or not parts[2].endswith(".zip")
            or not parts[2][:2].isdigit()
            or not 1 <= int(parts[2][:2]) <= 12
        ):
            return _no_such_key(request.path)
        kind, month = parts[0], f"{parts[1]}-{parts[2][:2]}"
        if not self.published(month):
            return _no_such_key(request.path)
        spec, stored = self.archive(kind, month, self.pending_faults(request))
        body = request.method == "GET"
        modified = self.last_modified(spec)
        headers = {"ETag": stored.etag, "Last-Modified": _http_date(modified), "Accept-Ranges": "bytes"}
        content_type = "application/zip"
        if_match = request.headers.get("if-match")
        if (
            if_match is not None
            and if_match.strip() != "*"
            and stored.etag not in [t.strip() for t in if_match.split(",")]
        ):
            return Response(
                412,
                _s3_error("PreconditionFailed", "At least one of the pre-conditions you specified did not hold"),
                headers,
                content_type="application/xml",
            )
        if_none_match = request.headers.get("if-none-match")
        if if_none_match is not None and (
            if_none_match.strip() == "*"
            or stored.etag in [t.strip().removeprefix("W/") for t in if_none_match.split(",")]
        ):
            return Response(304, b"", headers, content_type=content_type)
        range_header = request.headers.get("range")
        if if_range_ok(request.headers.get("if-range"), stored.etag, lambda value: value == _http_date(modified)):
            partial = range_answer(
                range_header,
                stored.size,
                headers,
                content_type,
                lambda start, end, part_headers: StreamedResponse(
                    206,
                    headers=part_headers,
                    content_type=content_type,
                    length=end - start + 1,
                    pieces=lambda: stored.pieces(start, end),
                    data_page=body,
                ),
            )
            if partial is not None:
                return partial
        # data_page: the core's reset_mid_page fault may cut it (a HEAD has no body to cut).
        return StreamedResponse(
            200,
            headers=headers,
            content_type=content_type,
            length=stored.size,
            pieces=lambda: stored.pieces(),
            data_page=body,
        )


def _s3_error(code: str, message: str, key: str = "") -> bytes:
    key_xml = f"<Key>{key}</Key>" if key else ""
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code><Message>{message}</Message>'
        f"{key_xml}<RequestId>REPLAY</RequestId></Error>"
    ).encode()


def _no_such_key(path: str):
    from civic_pipelines.replay.server import Response

    return Response(
        404,
        _s3_error("NoSuchKey", "The specified key does not exist.", path.lstrip("/")),
        {},
        content_type="application/xml",
    )


def install_street_manager(server, cache_dir: str | None = None) -> StreetManagerArchives:
    """Serve the Street Manager archives on ``server``; returns the archives object."""
    archives = StreetManagerArchives(cache_dir=cache_dir)
    server.install(archives)
    return archives
