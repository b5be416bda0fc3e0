"""SRWR, the Scottish Road Works Register: the export API client, the block planner and the
record-type decoder (contract: ``shared/contracts/street_manager.md``, the SRWR parts; lake
columns: ``docs/lake_contract_srwr.md``).

**Layout**, top-down: ``contract`` (the spec, the planner, the record layouts, the tables' schemas
and the field decoders), ``fetch`` (the two-step download, the probe, the block), ``transform``
(the file's records to the block's tables).

**Two steps per download.** ``GET {base}/export/api/v1/file/{identifier}.zip`` answers JSON
``{"url": ...}``; ``GET`` that pre-signed URL answers a zip holding one headerless CSV. The URL's
lifetime is not documented, so it is never cached: every attempt (the probe's, each download
attempt) asks step 1 for a fresh one, and a 403 from step 2 (expired or rejected signature) is
answered by asking again (``URL_ATTEMPTS`` times in all). Nothing is sent but the
``User-Agent``: the API needs no credentials.

**Identifiers (the planner).** A block is a calendar month. A month of a past year is read from the
year's file (``2023``); a month of the current year that has ended from its month file (``MAR``);
the current month and later months are not published yet (:class:`NotPublished`: the block is
skipped with the reason). Day files (``01``) are never needed for a complete month. "Today" is the
date in Europe/London, or the connection's ``extra.today`` (``YYYY-MM-DD``; tests and the replay
demo set it). A 404 from step 1 is also :class:`NotPublished` (e.g. a new year's file in the
first hours of January).

**Watermark.** The contract documents no change-detection header, so the probe reads what the
download host gives: step 1, then a one-byte ranged ``GET`` of the pre-signed URL (a URL signed
for GET refuses HEAD on S3). The watermark is the identifier plus the ``ETag``, ``Last-Modified``
and total length; when the host sends neither ``ETag`` nor ``Last-Modified`` it is the identifier,
the length and today's date (the contract's "identifier plus download date"), and ``run_block``'s
content checksum keeps an unchanged block from being rewritten. When the month moves from its
month file to its year file the identifier (hence the watermark) changes; the content does not.

**Which month a record belongs to.** Every record type carries the activity id in ``row[2]``
(contract), so records are grouped by activity. The only dates the contract documents are the
undertaker phase's (``008``) start and end, so an activity belongs to the month of its **earliest
undertaker-phase start, clamped into the file's period** (a later phase added by a late edit does
not move it): one starting before the period lands in its first month, one starting after it in
its last month, one that cannot be dated (no ``008`` with a readable start) in its first month;
the activity's ``placement`` says which (``start``, ``before_period``, ``after_period``,
``undated``). So a month file's block is every activity the file lists (real month files list many
whose works start after the month, and no later file lists them again: issue 14), and a year file
feeds twelve blocks, each its own months' activities. Every activity lands; every line of a file
lands or is quarantined in exactly one block. This rule is an inference (the contract does not say
what a file's period means): see the lake contract.

**Districts.** A ``099`` record needs no activity id. Every one lands in ``district_directory``,
one row per district key (``row[3]`` + ``row[4]``, contract), in every block read from the file;
one that belongs to an activity of the file also lands in ``district`` with it.

**Decoding.** Record types ``001`` activity (``data.parquet``), ``007`` phase, ``008`` undertaker
phase, ``010`` site and ``099`` district have named columns at the contract's positions (and only
those); every field as published is kept in ``raw_fields`` (a list, position 0 first), so the
undocumented positions stay available raw. Codes documented as two digits are zero-padded (``6``
-> ``06``; counted in ``codes_padded``). Phase numbers are integers; the ``008`` start and end are
each a date field plus a time field (``start_date``/``start_time``, ``end_date``/``end_time``, the
text as published) combined into naive timestamps (Scottish wall time, assumed) ``start_at`` and
``end_at``; formats tried: ``YYYY-MM-DD``, ``DD/MM/YYYY``, ``YYYYMMDD``, ``DD-MM-YYYY``, with
``HH:MM[:SS]`` or ``HHMM`` (an empty time is midnight). Any other record type lands raw in
``unknown_records`` (record type, activity id, the raw line and its fields). Named text values
are trimmed, empty ones are null; ``raw_fields`` and ``raw_line`` are verbatim.

**Layout check.** The CSV has no header, so a column removed, added or moved inside a record
shifts every later value without any error. A file with at least ``LAYOUT_CHECK_MIN`` records of
a type fails the block (:class:`SchemaDriftError`, nothing landed) when a documented column that
such a record cannot lack (``filled``: the activity's promoter and latest phase, the phase's
number, work category and status, the undertaker phase's number and start date, the site's code
and the district's keys and name; an inference, the contract states no nullability) is empty in
every record, or a code column (two digits, contract) holds no code in any. Widths per record
type are reported in ``file_field_counts``; a trailing field the contract lacks changes nothing
else (it stays in ``raw_fields``).

**Damaged or cut files.** A zip cut short, a CRC-32 that fails or deflate data that does not
inflate are retried with a fresh pre-signed URL (``URL_ATTEMPTS`` in all), then fail the block.
An export with no activity for a month whose previous landing had some is refused unless forced
(:class:`EmptyAnswerError`): a file published empty by mistake does not wipe a landed month.

**Quarantine** (``quarantine.parquet``, one row per line, the first broken rule):
``unterminated quoted field``, ``malformed CSV: ...``, ``<n> field(s): a record needs at least 3``,
``missing activity id``, ``record type <t> needs at least <m> fields, got <n>``, ``missing
<column>`` (an ``008`` start date), ``unparseable <column> <value>``. No activity is quarantined
as a whole (its dates only choose its block).

**Memory.** The body is read in 1 MiB pieces, inflated forward by the project's zip reader
(``civic_pipelines.core.zipstream``: no central directory, nothing on disk), decoded by
``Utf8Stream`` and split into records as it arrives. A record is kept (once, as text in Arrow chunks) only while its
activity may still belong to the block: an activity already dated earlier in the file's period
than the block is dropped as soon as that is known. The block's own records are decoded at the
end, once the activities' months are known.
"""

# The source's interface (what the registry and the runner read) and the names tests use, top-down:
# the contract, the fetch, the transform.
from civic_pipelines.sources.srwr.contract import (  # noqa: F401
    ACTIVITY,
    ARROW,
    CHUNK_ROWS,
    DIRECTORY,
    DISTRICT,
    HTTP_CHUNK,
    LANDED_TYPE,
    LAYOUT_CHECK_MIN,
    LAYOUTS,
    LISTED_UNDECODED,
    LONDON,
    MAX_RECORD_CHARS,
    MIN_FIELDS,
    MONTH_CODES,
    PHASE,
    PLACED_AFTER,
    PLACED_BEFORE,
    PLACED_BY_START,
    PLACED_UNDATED,
    QUARANTINE_SCHEMA,
    SCHEMAS,
    SITE,
    SPEC,
    STATUS_NAMES,
    TABLE_OF,
    TIMESTAMP_TYPE,
    UNDERTAKER_PHASE,
    UNKNOWN,
    URL_ATTEMPTS,
    WORK_CATEGORY_NAMES,
    ZIP_MAGIC,
    Column,
    Decoded,
    SrwrError,
    broken,
    decode,
    decode_row,
    identifier_for,
    normalise_code,
    parse_date_time,
    period_months,
    split_record,
    today_for,
    undertaker_times,
)
from civic_pipelines.sources.srwr.fetch import (  # noqa: F401
    auth_headers,
    export_url,
    extract_block,
    log,
    presigned_url,
    probe,
    watermark_of,
    with_fresh_url,
)
from civic_pipelines.sources.srwr.transform import read_file, records  # noqa: F401
