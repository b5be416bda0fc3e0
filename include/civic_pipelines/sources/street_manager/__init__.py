"""DfT Street Manager (England): the monthly open-data archives of permits, activities and
section 58 notices, one block per archive type (``part``) and month.

Owns: the archive URL, the HEAD watermark, the streamed download (resumed with ``Range`` when the
connection drops), joining the archive's members (read by ``civic_pipelines.core.zipstream``, the
project's one forward zip reader) into JSON lines, the JSON parse, the typed flat schema of each part,
normalisation (event types, bare times, coordinates), validation with quarantine, and the drift
report. Contract: ``shared/contracts/street_manager.md``; lake columns:
``docs/lake_contract_street_manager.md``.

**Layout**, top-down: ``contract`` (the spec, each part's fields, the lake and parse schemas, the
archive errors), ``fetch`` (probe, the block, the resumed download), ``transform`` (parse, type,
normalise, validate, quarantine), built on ``archive`` (members joined into JSON-lines chunks,
handed across threads) and ``coordinates`` (BNG WKT to WGS84).

**Publication.** ``https://opendata.manage-roadworks.service.gov.uk/{type}/{YYYY}/{MM}.zip``;
month M appears on the 1st of month M+1. :func:`probe` refuses a month that has not ended
without asking, and sends ``HEAD`` for the others: a 404 means not published (the block is
skipped with that reason, through :class:`NotPublished`); otherwise the watermark is the
archive's ``ETag``, ``Last-Modified`` and ``Content-Length`` together, so any change re-lands.

**Reading.** The DfT archives' central directory is broken, so the zip is read forward through
its local file headers as the bytes arrive (never written to disk): each member is inflated and
checked against its CRC-32 and size, members that give their sizes in a data descriptor are read
with a streaming inflater, and the archive is complete only when the central directory's first
record follows the last member. A stream that ends before that is a truncated archive
(:class:`ArchiveTruncated`); bytes that are neither a member nor the directory, and a member that
does not inflate or fails its CRC-32 or size check (damaged bytes: its event is lost, unlike a bad
record, whose text is kept in quarantine), are a corrupt one (:class:`ArchiveCorrupt`). Either
fails the block, so a partial month never lands, and, the writer being aborted, the previous
landing stays. Members are joined into newline-delimited JSON in chunks of ``CHUNK_BYTES``
(their own line breaks, which JSON allows only as whitespace, become spaces) and parsed by
``pyarrow.json`` against the part's explicit schema, each chunk into one typed record batch that
is written at once. Download, unzip and join run in a thread of their own while the previous
chunk is parsed and written, so the two cores overlap; the queue between them holds at most
``QUEUE_CHUNKS`` chunks, so memory is bounded by a few chunks whatever the archive's size.

**Typing and normalisation.** Every contract field is a column (absent keys are null); dates
are ``timestamp[ms, UTC]``; ``event_type`` is normalised to the upper-snake spelling
(``work-start`` and ``Work Start`` are ``WORK_START``; ``CURRENT_TRAFFIC_MANAGEMENT_TYPE_UPDATED``
is ``CURRENT_TRAFFIC_MANAGEMENT_UPDATED``) and the published spelling is kept in
``event_type_published``; ``proposed_start_time`` / ``proposed_end_time`` given as a bare
``"13:50"`` become the UTC instant of that UK-local time on the UK-local day of
``proposed_start_date`` / ``proposed_end_date``; the coordinates' BNG (EPSG:27700) WKT is kept
and ``longitude``/``latitude`` (WGS84) of the point, or of the centroid of a linestring (length
weighted) or polygon (area weighted, holes subtracted), are added with a fixed PROJ pipeline
(EPSG:1314, the OSGB36 to WGS 84 Helmert transformation, about 2 m), so the figures do not depend
on which grids a machine has installed. Fields the contract does not know are kept as JSON in
``extras``, in the event's own shape (``{"object_data": {"new_field": ...}}``), and reported in
the manifest's ``drift``; a known field that arrives with another JSON type is converted to the
column's type and reported too.

**Quarantine** (``quarantine.parquet``: ``member``, ``raw``, ``_reason``, ``_block_month``,
``_landed_at``): a member that is not JSON or not an object, encrypted or compressed with a
method other than deflate, an event without ``event_reference``, ``event_type``, a readable ``event_time`` or its
part's reference number, one of another object type than the archive's, and a repeated
``event_reference`` (the natural key; the first one stays). A required field missing from every
event of a non-empty archive is a schema change, not bad rows: the block fails
(:class:`SchemaDriftError`).
"""

# The source's interface (what the registry and the runner read) and the names tests use, top-down:
# the contract, the fetch, the transform, then the pieces they are built from.
from civic_pipelines.sources.street_manager.archive import CHUNK_BYTES, QUEUE_CHUNKS, Chunk, ZipWalker, pipelined  # noqa: F401
from civic_pipelines.sources.street_manager.contract import (  # noqa: F401
    _LONDON,
    ACTIVITY_FIELDS,
    BARE_TIME_FIELDS,
    BNG_TO_WGS84,
    COORDINATE_FIELDS,
    ENVELOPE_FIELDS,
    EVENT_TYPE_ALIASES,
    KNOWN_EVENT_TYPES,
    LANDED_TYPE,
    OBJECT_FIELDS,
    OBJECT_TYPES,
    PERMIT_FIELDS,
    QUARANTINE_SCHEMA,
    REFERENCE_FIELDS,
    SECTION_58_FIELDS,
    SPEC,
    TIMESTAMP,
    TIMESTAMP_FIELDS,
    ArchiveChanged,
    ArchiveCorrupt,
    ArchiveError,
    ArchiveTruncated,
    _parse_schema,
    data_schema,
    normalise_event_type,
)
from civic_pipelines.sources.street_manager.coordinates import bng_wkt_to_wgs84  # noqa: F401
from civic_pipelines.sources.street_manager.fetch import (  # noqa: F401
    HTTP_PIECE,
    RESUME_ATTEMPTS,
    Download,
    archive_url,
    auth_headers,
    log,
    probe,
    stream_block,
)
from civic_pipelines.sources.street_manager.transform import PARSE_BLOCK, ArchiveReader  # noqa: F401
