"""SRWR (Scottish Road Works Register) export API for the replay server.

Owns both the *data* (deterministic, generated: no SRWR CSV rows exist in any public repository,
contract *Volumes*) and the two-step export API (``shared/contracts/street_manager.md``, SRWR)::

    GET /export/api/v1/file/{identifier}.zip  -> 200 JSON {"url": "<pre-signed URL>"}
    GET /export/api/v1/daily                  -> 200 JSON {"url": ...} (the latest day file)
    GET <pre-signed URL>                      -> 200 application/zip, one headerless CSV

``identifier`` is a past year (``2023``), a month of the current year as an upper-case three-letter
code (``MAR``) or a day of the current month as two digits (``01``). "Current" follows the
replay's *today* (configurable; default the real date in UTC). What exists:

- a year ``Y`` with ``FIRST_YEAR <= Y < today.year``;
- a month code of the current year for a month that has ended (``JAN`` .. the month before
  today's; the current month is covered by day files only: the replay's choice, the contract is
  silent);
- a day ``DD`` of the current month before today (a day file appears after the day).

Anything else (an unknown or lower-case identifier, a future period) is a 404 with a small JSON
body: the real API's error behaviour is not documented.

**Pre-signed URLs** look like S3 SigV4 query signing on this same server
(``/srwr-exports/{identifier}.zip?X-Amz-Algorithm=...&X-Amz-Date=...&X-Amz-Expires=...&
X-Amz-Signature=...``). The signature is an HMAC over the path, the date and the lifetime; a
tampered or missing signature is a 403 ``SignatureDoesNotMatch``, an expired one a 403
``AccessDenied`` ("Request has expired"), with S3's XML error body. The URL lifetime is not
documented (contract: fetch it right away, never cache it); here it is ``url_ttl_seconds``. The
download answers ``ETag`` (MD5 of the body, S3 style), ``Last-Modified``, ``Content-Length``,
``Accept-Ranges`` and one byte range (206/416); ``HEAD`` is not offered (an S3 URL pre-signed for
GET does not accept HEAD either). The download route is ``faultable``: the core's ``status_*``, ``delay``
and ``reset_mid_page`` apply to it (step 1 is not faultable).

**Fault switches this module implements** (``POST /_replay/faults``), each taken by the next n
*full* downloads (not while a ``reset_mid_page`` is pending, so the download that a reset cuts
is not the faulted one)::

    malformed_row     two broken lines for the file's first activity: a ``007`` cut to six
                      fields and an ``008`` whose start date is ``not-a-date``
    empty_month       the zip holds the CSV with no line at all
    drop_field        one column is gone from every record of one type: the fields after it move
                      left, as in a headerless CSV they would (``fault_options.drop_field``
                      ``{"record_type": "001", "position": 5}`` by default: the activity's
                      promoter id)
    new_field         every record gains a trailing field the contract lacks
    retype_field      the ``008`` dates and times change format: ``DD/MM/YYYY`` and ``HHMM``
                      instead of ``YYYY-MM-DD`` and ``HH:MM`` (in a CSV every value is text; a
                      type change shows as a new format)
    truncate_archive  the zip ends at 60 % of its bytes, inside the CSV member (a complete HTTP
                      response of a truncated file)
    corrupt_archive   16 bytes in the middle of the zip (the CSV's deflate data) overwritten

While one is pending, a ranged ``GET`` (the probe's first byte) already describes the faulted file
(its bytes, ``ETag`` and length) without taking it, as it would if SRWR had published that file.
The export API needs no credential (contract), so the core's ``status_401`` has no SRWR meaning
(it answers the core's 401 on step 2); the credential-like thing here is the pre-signed URL, whose
expiry is ``expire_next_urls`` (S3's 403 ``AccessDenied``, "Request has expired").

**The file.** One CSV member named ``{identifier}.csv``, UTF-8, CRLF, no header, record type in
``row[1]`` and the activity id in ``row[2]`` on every line (contract). An activity is written as
``001``, then ``007`` + ``008`` per phase, ``010`` sites, one ``099`` district, and sometimes a line
of a record type the decoder does not know (``002``, ``036``, ``041``: listed by the contract's
consumer but undecoded; ``555``: in no list). Only the positions the contract documents carry
values; the rest are empty, except ``row[0]`` (undocumented), which the replay fills with the
line's ordinal within its activity. Record widths (``RECORD_WIDTHS``) are the replay's choice.
Codes are two digits from the contract's lists; with ``one_digit_share`` a code below 10 is
written with one digit (``6`` for ``06``; contract quirk). Dates are ``YYYY-MM-DD`` and times
``HH:MM`` (the real formats are not documented). A share of activities (``undated_share``) has no
``008`` (no undertaker phase: works by a roads authority, an assumption), so a client cannot date
them.

An activity is listed in the month it is generated for; its first phase starts that month, except
for a share ``late_start_share`` (default 0) whose works start 1 to 75 days after the month ends
(the real files list such activities: about a third of a month file's, issue 14). A year file is
its twelve months in order, a month file one month, a day file the activities of the current
month listed that day. Every month is generated from ``(seed, year, month)`` alone, so a late edit in one month
leaves every other month unchanged.

**Watermarks.** A file's ``Last-Modified`` is 03:00 UTC on the day after its period (published
overnight) plus one minute per late edit in its months; its ``ETag`` changes with its bytes.

Configuration (``POST /_replay/config``), section ``srwr``::

    {"activities_per_month": 120}      activities generated per month (clears late edits)
    {"today": "2026-11-23"}           the replay's today (null: the real date)
    {"late_edits": {"month": "2023-05", "n": 3}}   (or a list) change n activities of a month
    {"url_ttl_seconds": 300}          lifetime of a pre-signed URL
    {"expire_next_urls": 2}           the next n pre-signed URLs are issued already expired
    {"one_digit_share": 0.25, "undated_share": 0.03, "unknown_share": 0.15, "late_start_share": 0.0}
    {"fault_options": {"drop_field": {"record_type": "008", "position": 20}}}
"""

from __future__ import annotations

import calendar
import csv
import datetime as _dt
import hashlib
import hmac
import io
import random
import threading
import time
from urllib.parse import quote, urlencode

from civic_pipelines.replay import horizon
from civic_pipelines.replay.ckan import http_date
from civic_pipelines.replay.http_stream import parse_range
from civic_pipelines.replay.server import Request, Response, json_response
from civic_pipelines.replay.toronto import build_zip, etag_for

FIRST_YEAR = 2020  # the contract's example year; the register's first export year is not documented
MONTH_CODES = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
API_PREFIX = "/export/api/v1/"
DOWNLOAD_PREFIX = "/srwr-exports/"
DEFAULT_SEED = 20240101
DEFAULT_ACTIVITIES = 120
_SECRET = b"civic-replay-srwr"

# Fields per record type in the generated file (the contract gives only the positions it names).
RECORD_WIDTHS = {"001": 14, "007": 15, "008": 24, "010": 12, "099": 6}
UNKNOWN_TYPES = ("002", "036", "041", "555")

# Contract code lists (incomplete there too).
WORK_CATEGORIES = [f"{n:02d}" for n in range(1, 27)]
STATUSES = ["01", "04", "05", "07", "15", "18"]
TRAFFIC_MANAGEMENT = [f"{n:02d}" for n in range(0, 42)]
SITE_LOCATIONS = [f"{n:02d}" for n in range(1, 13)]  # not in the contract: the replay's own list

COUNCILS = [
    "Aberdeen City Council", "Aberdeenshire Council", "Angus Council", "Argyll and Bute Council",
    "City of Edinburgh Council", "Clackmannanshire Council", "Comhairle nan Eilean Siar",
    "Dumfries and Galloway Council", "Dundee City Council", "East Ayrshire Council",
    "East Dunbartonshire Council", "East Lothian Council", "East Renfrewshire Council", "Falkirk Council",
    "Fife Council", "Glasgow City Council", "Highland Council", "Inverclyde Council", "Midlothian Council",
    "Moray Council", "North Ayrshire Council", "North Lanarkshire Council", "Orkney Islands Council",
    "Perth and Kinross Council", "Renfrewshire Council", "Scottish Borders Council", "Shetland Islands Council",
    "South Ayrshire Council", "South Lanarkshire Council", "Stirling Council", "West Dunbartonshire Council",
    "West Lothian Council",
]
STREETS = [
    "Princes Street, Edinburgh", "Leith Walk, Edinburgh", "Sauchiehall Street, Glasgow",
    "Great Western Road, Glasgow", "Union Street, Aberdeen", "Murraygate, Dundee", "High Street, Perth",
    "Academy Street, Inverness", "King Street, Stirling", "Bridge Street, Kilmarnock",
    'Outside "The Auld Hoose", St Leonard\'s Street, Edinburgh', "A9 Dunkeld to Pitlochry",
]
PROMOTERS = [f"{n:04d}" for n in (1001, 1002, 1003, 2101, 2102, 3050, 4000, 4001, 5200, 7700)]
# The data faults this module implements on full downloads (see the docstring).
MODULE_FAULTS = ("malformed_row", "empty_month", "drop_field", "new_field", "retype_field", "truncate_archive",
                 "corrupt_archive")
DEFAULT_DROP = {"record_type": "001", "position": 5}
NEW_FIELD_VALUE = "replay-new-field"


def _month_key(year: int, month: int) -> str:
    return f"{year:04d}-{month:02d}"


def _last_day(year: int, month: int) -> int:
    return calendar.monthrange(year, month)[1]


# ---------------------------------------------------------------- the data


class SrwrDataset:
    """Generated activities per month, their CSV lines and the zipped files per identifier."""

    def __init__(self, seed: int = DEFAULT_SEED, activities_per_month: int = DEFAULT_ACTIVITIES,
                 today: str | _dt.date | None = None, one_digit_share: float = 0.25, undated_share: float = 0.03,
                 unknown_share: float = 0.15, first_year: int = FIRST_YEAR, late_start_share: float = 0.0) -> None:
        self.seed = seed
        self.first_year = first_year
        self._lock = threading.RLock()
        self._initial = dict(activities_per_month=activities_per_month, today=today, one_digit_share=one_digit_share,
                             undated_share=undated_share, unknown_share=unknown_share,
                             late_start_share=late_start_share)
        self.reset()

    # ------------------------------------------------------------ state

    def reset(self) -> None:
        with self._lock:
            initial = self._initial
            self.activities_per_month = int(initial["activities_per_month"])
            self._today = self._parse_today(initial["today"])
            self.one_digit_share = float(initial["one_digit_share"])
            self.undated_share = float(initial["undated_share"])
            self.unknown_share = float(initial["unknown_share"])
            self.late_start_share = float(initial["late_start_share"])
            self._clear()

    def _clear(self) -> None:
        self._months: dict[tuple[int, int], list[dict]] = {}
        self._edits: dict[tuple[int, int], int] = {}
        self._files: dict[tuple, tuple[bytes, str, _dt.datetime]] = {}

    @staticmethod
    def _parse_today(value) -> _dt.date | None:
        if value is None or isinstance(value, _dt.date):
            return value
        try:
            return _dt.date.fromisoformat(str(value))
        except ValueError:
            raise ValueError(f"today must be YYYY-MM-DD or null, not {value!r}") from None

    @property
    def today(self) -> _dt.date:
        return self._today or horizon.today()

    def set_today(self, value) -> None:
        with self._lock:
            self._today = self._parse_today(value)
            self._files.clear()

    def set_activities_per_month(self, n: int) -> None:
        if not isinstance(n, int) or isinstance(n, bool) or n < 0:
            raise ValueError("activities_per_month must be an integer >= 0")
        with self._lock:
            self.activities_per_month = n
            self._clear()

    def set_share(self, name: str, value) -> None:
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 <= value <= 1:
            raise ValueError(f"{name} must be a number between 0 and 1")
        with self._lock:
            setattr(self, name, float(value))
            self._clear()

    # ------------------------------------------------------------ generation

    def activities(self, year: int, month: int) -> list[dict]:
        """The month's activities (generated once, with any late edits applied)."""
        with self._lock:
            key = (year, month)
            if key not in self._months:
                self._months[key] = self._generate(year, month)
            return self._months[key]

    def _code(self, rng: random.Random, code: str) -> str:
        if code[0] == "0" and rng.random() < self.one_digit_share:
            return code[1]  # the quirk: "6" for "06"
        return code

    def _generate(self, year: int, month: int) -> list[dict]:
        rng = random.Random(f"srwr:{self.seed}:{year}:{month}")
        days = _last_day(year, month)
        out = []
        for index in range(self.activities_per_month):
            activity_id = f"{(year - 2000) * 100 + month:04d}{index:05d}"
            day = rng.randint(1, days)
            start = _dt.datetime(year, month, day, rng.randint(7, 18), rng.choice((0, 15, 30, 45)))
            dated = rng.random() >= self.undated_share
            phases = []
            phase_start = start
            for number in range(1, rng.choice((1, 1, 1, 2, 2, 3)) + 1):
                if number > 1:
                    phase_start = phase_start + _dt.timedelta(days=rng.randint(1, 10), hours=rng.randint(0, 3))
                end = None if rng.random() < 0.1 else phase_start + _dt.timedelta(days=rng.randint(0, 20), hours=rng.randint(1, 8))
                phases.append({
                    "number": number,
                    "location": rng.choice(STREETS),
                    "work_category": self._code(rng, rng.choice(WORK_CATEGORIES)),
                    "status": self._code(rng, rng.choice(STATUSES)),
                    "coordinates": f"POINT ({rng.randint(200000, 400000)} {rng.randint(600000, 900000)})",
                    "start": phase_start,
                    "end": end,
                    "traffic_management": self._code(rng, rng.choice(TRAFFIC_MANAGEMENT)),
                    "footway": rng.choice(("Y", "N", "N")),
                })
            council = rng.randrange(len(COUNCILS))
            unknown = []
            if rng.random() < self.unknown_share:
                record_type = rng.choice(UNKNOWN_TYPES)
                unknown.append((record_type, [str(rng.randint(0, 999)) for _ in range(rng.randint(1, 5))]))
            out.append({
                "id": activity_id,
                "month": _month_key(year, month),
                "day": day,
                "dated": dated,
                "first_start": start if dated else None,
                "promoter": rng.choice(PROMOTERS),
                "phases": phases,
                "sites": [{"location_code": self._code(rng, rng.choice(SITE_LOCATIONS))} for _ in range(rng.randint(0, 2))],
                "district": {"key_1": f"{9001 + council:04d}", "key_2": f"{rng.randint(1, 4):02d}", "name": COUNCILS[council]},
                "unknown": unknown,
                "edits": 0,
            })
        self._start_late(out, year, month)
        return out

    def _start_late(self, activities: list[dict], year: int, month: int) -> None:
        """A share ``late_start_share`` of the month's dated activities is listed in the month but
        has its works start after it (1 to 75 days after the month ends, e.g. works noticed ahead):
        its phases move by the same offset. A random stream of its own, so the share changes no
        other value of the month."""
        if not self.late_start_share:
            return
        rng = random.Random(f"srwr-late:{self.seed}:{year}:{month}")
        after = _dt.datetime(year + (month == 12), month % 12 + 1, 1)
        for activity in activities:
            if rng.random() >= self.late_start_share or not activity["dated"]:
                continue
            first = activity["first_start"]
            target = after + _dt.timedelta(days=rng.randint(0, 74), hours=first.hour, minutes=first.minute)
            shift = target - first
            for phase in activity["phases"]:
                phase["start"] = phase["start"] + shift
                phase["end"] = phase["end"] + shift if phase["end"] else None
            activity["first_start"] = target

    @staticmethod
    def lines(activity: dict) -> list[list[str]]:
        """The activity's CSV records, in file order."""
        records: list[list[str]] = []

        def record(record_type: str, values: dict[int, str], width: int | None = None) -> None:
            width = width or RECORD_WIDTHS[record_type]
            fields = [""] * width
            fields[0] = str(len(records) + 1)
            fields[1] = record_type
            fields[2] = activity["id"]
            for position, value in values.items():
                fields[position] = value
            records.append(fields)

        phases = activity["phases"]
        record("001", {5: activity["promoter"], 11: str(len(phases))})
        for phase in phases:
            record("007", {6: phase["location"], 7: str(phase["number"]), 9: phase["work_category"],
                           10: phase["status"], 12: phase["coordinates"]})
            if activity["dated"]:
                end = phase["end"]
                record("008", {3: str(phase["number"]), 4: phase["start"].strftime("%Y-%m-%d"),
                               6: phase["start"].strftime("%H:%M"),
                               8: end.strftime("%Y-%m-%d") if end else "", 9: end.strftime("%H:%M") if end else "",
                               20: phase["traffic_management"], 21: phase["footway"]})
        for site in activity["sites"]:
            record("010", {9: site["location_code"]})
        district = activity["district"]
        record("099", {3: district["key_1"], 4: district["key_2"], 5: district["name"]})
        for record_type, values in activity["unknown"]:
            record(record_type, {3 + i: v for i, v in enumerate(values)}, width=3 + len(values))
        return records

    # ------------------------------------------------------------ late edits

    def apply_late_edits(self, year: int, month: int, n: int) -> list[str]:
        """Change n activities of the month (the latest phase's status moves on, its end date is set);
        returns their ids. Every file holding the month gets new bytes and a later Last-Modified."""
        if not 1 <= month <= 12 or n < 1:
            raise ValueError("late_edits needs a month 1..12 and n >= 1")
        with self._lock:
            activities = self.activities(year, month)
            if not activities:
                return []
            count = self._edits.get((year, month), 0)
            rng = random.Random(f"srwr-edit:{self.seed}:{year}:{month}:{count}")
            chosen = rng.sample(range(len(activities)), min(n, len(activities)))
            for index in sorted(chosen):
                activity = activities[index]
                phase = activity["phases"][-1]
                current = phase["status"].zfill(2)
                phase["status"] = STATUSES[(STATUSES.index(current) + 1) % len(STATUSES)] if current in STATUSES else "07"
                phase["end"] = (phase["end"] or phase["start"]) + _dt.timedelta(days=1)
                activity["edits"] += 1
            self._edits[(year, month)] = count + 1
            self._files.clear()
            return [activities[i]["id"] for i in sorted(chosen)]

    def late_edits(self) -> dict[str, int]:
        with self._lock:
            return {_month_key(y, m): n for (y, m), n in sorted(self._edits.items())}

    # ------------------------------------------------------------ identifiers and files

    def resolve(self, identifier: str) -> dict | None:
        """``{"kind", "months": [(y, m)], "day": d | None}`` for a published identifier, else None."""
        today = self.today
        if len(identifier) == 4 and identifier.isdigit():
            year = int(identifier)
            if self.first_year <= year < today.year:
                return {"kind": "year", "months": [(year, m) for m in range(1, 13)], "day": None}
            return None
        if identifier in MONTH_CODES:
            month = MONTH_CODES.index(identifier) + 1
            if month < today.month:
                return {"kind": "month", "months": [(today.year, month)], "day": None}
            return None
        if len(identifier) == 2 and identifier.isdigit():
            day = int(identifier)
            if 1 <= day < today.day:
                return {"kind": "day", "months": [(today.year, today.month)], "day": day}
            return None
        return None

    def identifiers(self) -> list[str]:
        today = self.today
        return ([str(y) for y in range(self.first_year, today.year)] + list(MONTH_CODES[: today.month - 1])
                + [f"{d:02d}" for d in range(1, today.day)])

    def file_activities(self, identifier: str) -> list[dict]:
        period = self.resolve(identifier)
        if period is None:
            raise KeyError(identifier)
        out = []
        for year, month in period["months"]:
            for activity in self.activities(year, month):
                if period["day"] is None or activity["day"] == period["day"]:
                    out.append(activity)
        return out

    def csv_bytes(self, identifier: str, extra_lines: list[list[str]] | None = None) -> bytes:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\r\n")
        for activity in self.file_activities(identifier):
            writer.writerows(self.lines(activity))
        if extra_lines:
            writer.writerows(extra_lines)
        return buffer.getvalue().encode("utf-8")

    def last_modified(self, identifier: str) -> _dt.datetime:
        period = self.resolve(identifier)
        if period is None:
            raise KeyError(identifier)
        year, month = period["months"][-1]
        if period["kind"] == "day":
            base = _dt.datetime(year, month, period["day"]) + _dt.timedelta(days=1)
        else:
            base = _dt.datetime(year + (month == 12), month % 12 + 1, 1)
        edits = sum(self._edits.get(key, 0) for key in period["months"])
        return base + _dt.timedelta(hours=3, minutes=edits)

    def file(self, identifier: str) -> tuple[bytes, str, _dt.datetime]:
        """The zip, its ETag and its Last-Modified (cached until the data or today change)."""
        with self._lock:
            key = (identifier, self.today)
            if key not in self._files:
                modified = self.last_modified(identifier)
                body = build_zip(f"{identifier}.csv", self.csv_bytes(identifier), modified)
                self._files[key] = (body, etag_for(body), modified)
            return self._files[key]

    def faulted_file(self, identifier: str, faults=("malformed_row",), drop: dict | None = None
                     ) -> tuple[bytes, str, _dt.datetime]:
        """The file as the data faults (``MODULE_FAULTS``) publish it (not cached)."""
        activities = self.file_activities(identifier)
        records = [] if "empty_month" in faults else [fields for a in activities for fields in self.lines(a)]
        if "malformed_row" in faults:
            first = next((a for a in activities if a["dated"]), None)
            if first is not None:
                lines = self.lines(first)
                phase = next(line for line in lines if line[1] == "007")
                undertaker = list(next(line for line in lines if line[1] == "008"))
                undertaker[4] = "not-a-date"
                records += [phase[:6], undertaker]
        if "drop_field" in faults:
            drop = {**DEFAULT_DROP, **(drop or {})}
            records = [fields[:drop["position"]] + fields[drop["position"] + 1:] if fields[1] == drop["record_type"]
                       else fields for fields in records]
        if "new_field" in faults:
            records = [[*fields, NEW_FIELD_VALUE] for fields in records]
        if "retype_field" in faults:
            records = [_retyped_dates(fields) if fields[1] == "008" else fields for fields in records]
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="\r\n").writerows(records)
        modified = self.last_modified(identifier)
        body = build_zip(f"{identifier}.csv", buffer.getvalue().encode("utf-8"), modified)
        if "truncate_archive" in faults:
            body = body[: len(body) * 6 // 10]
        if "corrupt_archive" in faults and len(body) > 200:
            at = len(body) // 2
            body = body[:at] + bytes((i * 73 + 41) & 0xFF for i in range(16)) + body[at + 16:]
        return body, etag_for(body), modified

    # ------------------------------------------------------------ what a client should land

    def expected_month(self, month: str, identifier: str | None = None) -> dict[str, list[list[str]]]:
        """The records a client lands for ``month``'s block by record type
        (``{"001": [fields, ...], ...}``), by the block rule of ``docs/lake_contract_srwr.md``: a
        month file's block is every activity the file lists; a year file gives each activity the
        month of its first phase's start, clamped into the year (before: January, after:
        December), and an undated one January. ``identifier`` None: the month's year file."""
        year, number = int(month[:4]), int(month[5:7])
        if identifier is not None and identifier in MONTH_CODES:
            chosen = list(self.activities(year, number))
        else:
            chosen = []
            for listed in range(1, 13):
                for activity in self.activities(year, listed):
                    if self.year_file_month(activity, year) == number:
                        chosen.append(activity)
        out: dict[str, list[list[str]]] = {}
        for activity in chosen:
            for fields in self.lines(activity):
                out.setdefault(fields[1], []).append(fields)
        return out

    @staticmethod
    def year_file_month(activity: dict, year: int) -> int:
        """The month a year file's reader gives the activity (the block rule; see expected_month)."""
        first = activity["first_start"]
        if first is None or first.year < year:
            return 1
        if first.year > year:
            return 12
        return first.month

    def undated(self, year: int, month: int) -> list[dict]:
        return [a for a in self.activities(year, month) if not a["dated"]]

    def describe(self) -> dict:
        return {
            "seed": self.seed,
            "activities_per_month": self.activities_per_month,
            "today": self.today.isoformat(),
            "today_configured": self._today is not None,
            "one_digit_share": self.one_digit_share,
            "undated_share": self.undated_share,
            "unknown_share": self.unknown_share,
            "late_start_share": self.late_start_share,
            "first_year": self.first_year,
            "identifiers": self.identifiers(),
            "edited_months": self.late_edits(),
        }


def _retyped_dates(fields: list[str]) -> list[str]:
    """An ``008`` record with its dates as ``DD/MM/YYYY`` and its times as ``HHMM``."""
    out = list(fields)
    for position in (4, 8):
        if out[position]:
            out[position] = _dt.datetime.strptime(out[position], "%Y-%m-%d").strftime("%d/%m/%Y")
    for position in (6, 9):
        out[position] = out[position].replace(":", "")
    return out


# ---------------------------------------------------------------- the export API


def _not_found(identifier: str) -> Response:
    return json_response(404, {"error": "Not Found", "message": f"No export file for identifier {identifier!r}"})


def _s3_error(code: str, message: str, **extra) -> Response:
    parts = "".join(f"<{k}>{v}</{k}>" for k, v in extra.items())
    body = (f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code><Message>{message}</Message>'
            f"{parts}<RequestId>REPLAY</RequestId></Error>").encode()
    return Response(403, body, {}, content_type="application/xml")


def _amz_date(moment: float) -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(moment))


def _signature(path: str, amz_date: str, expires: str) -> str:
    return hmac.new(_SECRET, f"GET\n{path}\n{amz_date}\n{expires}".encode(), hashlib.sha256).hexdigest()


class SrwrApi:
    """The export API over a :class:`SrwrDataset`."""

    name = "srwr"

    def __init__(self, dataset: SrwrDataset, url_ttl_seconds: int = 300) -> None:
        self.dataset = dataset
        self._initial_ttl = url_ttl_seconds
        self.url_ttl_seconds = url_ttl_seconds
        self.expire_next_urls = 0
        self.issued = 0
        self.fault_options: dict = {}
        self._lock = threading.Lock()
        self._server_url = ""

    def install(self, server) -> None:
        self._server_url = server.url
        server.add_route(API_PREFIX, self.handle_api)
        server.add_route(DOWNLOAD_PREFIX, self.handle_download, faultable=True, processing_body=b"")
        server.add_config_handler(self.name, self.configure, self.describe)
        server.add_data_reset_hook(self.reset_data)
        server.state.add_reset_hook(self.reset_switches)

    def reset_switches(self) -> None:
        """Cleared by every ``/_replay/reset`` (like the core's fault switches)."""
        with self._lock:
            self.expire_next_urls = 0

    def _base(self, request: Request) -> str:
        host = request.headers.get("host")
        return f"http://{host}" if host else self._server_url

    # ------------------------------------------------------------ step 1

    def presign(self, base: str, identifier: str) -> str:
        with self._lock:
            expired = self.expire_next_urls > 0
            if expired:
                self.expire_next_urls -= 1
            self.issued += 1
            ttl = self.url_ttl_seconds
        moment = time.time() - (ttl + 60 if expired else 0)
        amz_date = _amz_date(moment)
        path = f"{DOWNLOAD_PREFIX}{identifier}.zip"
        query = {
            "X-Amz-Algorithm": "AWS4-HMAC-SHA256",
            "X-Amz-Credential": f"REPLAYKEY/{amz_date[:8]}/eu-west-2/s3/aws4_request",
            "X-Amz-Date": amz_date,
            "X-Amz-Expires": str(ttl),
            "X-Amz-SignedHeaders": "host",
            "X-Amz-Signature": _signature(path, amz_date, str(ttl)),
        }
        return f"{base}{path}?{urlencode(query, quote_via=quote)}"

    def handle_api(self, request: Request) -> Response:
        rest = request.path[len(API_PREFIX):]
        base = self._base(request)
        if rest.rstrip("/") == "daily":
            today = self.dataset.today
            if today.day == 1:
                return _not_found("daily")
            return json_response(200, {"url": self.presign(base, f"{today.day - 1:02d}")})
        if not rest.startswith("file/") or not rest.endswith(".zip"):
            return json_response(404, {"error": "Not Found", "message": f"No route for {request.path}"})
        identifier = rest[len("file/"):-len(".zip")]
        if self.dataset.resolve(identifier) is None:
            return _not_found(identifier)
        return json_response(200, {"url": self.presign(base, identifier)})

    # ------------------------------------------------------------ step 2

    def check_signature(self, request: Request) -> Response | None:
        amz_date = request.param("X-Amz-Date")
        expires = request.param("X-Amz-Expires")
        signature = request.param("X-Amz-Signature")
        if not (amz_date and expires and signature):
            return _s3_error("AccessDenied", "Query-string authentication requires the Signature, Expires and "
                                             "AWSAccessKeyId parameters")
        if not hmac.compare_digest(signature, _signature(request.path, amz_date, expires)):
            return _s3_error("SignatureDoesNotMatch", "The request signature we calculated does not match the "
                                                      "signature you provided.")
        try:
            signed_at = _dt.datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=_dt.timezone.utc)
            lifetime = int(expires)
        except ValueError:
            return _s3_error("AuthorizationQueryParametersError", "X-Amz-Date or X-Amz-Expires is malformed")
        now = _dt.datetime.now(_dt.timezone.utc)
        if now > signed_at + _dt.timedelta(seconds=lifetime):
            return _s3_error("AccessDenied", "Request has expired", **{
                "X-Amz-Expires": lifetime,
                "Expires": (signed_at + _dt.timedelta(seconds=lifetime)).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "ServerTime": now.strftime("%Y-%m-%dT%H:%M:%SZ")})
        return None

    def handle_download(self, request: Request) -> Response:
        name = request.path[len(DOWNLOAD_PREFIX):]
        denied = self.check_signature(request)
        if denied is not None:
            return denied
        identifier = name[:-len(".zip")] if name.endswith(".zip") else None
        if identifier is None or self.dataset.resolve(identifier) is None:
            body = (b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>NoSuchKey</Code>'
                    b"<Message>The specified key does not exist.</Message></Error>")
            return Response(404, body, {}, content_type="application/xml")
        range_header = request.headers.get("range")
        data = None
        faults = request.state.faults
        if range_header:  # the probe: the file the next full download gets, not taking the faults
            pending = tuple(name for name in MODULE_FAULTS if faults.get(name))
        elif faults.get("reset_mid_page") == 0:
            pending = tuple(name for name in MODULE_FAULTS if faults.take(name))
        else:
            pending = ()
        if pending:
            data, etag, modified = self.dataset.faulted_file(identifier, pending, self.fault_options.get("drop_field"))
        if data is None:
            data, etag, modified = self.dataset.file(identifier)
        headers = {"ETag": etag, "Last-Modified": http_date(modified), "Accept-Ranges": "bytes"}
        if range_header:
            parsed = parse_range(range_header, len(data))
            if parsed == "unsatisfiable":
                return Response(416, b"", {**headers, "Content-Range": f"bytes */{len(data)}"},
                                content_type="application/zip")
            if parsed is not None:
                start, end = parsed
                return Response(206, data[start:end + 1], {**headers, "Content-Range": f"bytes {start}-{end}/{len(data)}"},
                                content_type="application/zip")
        return Response(200, data, headers, content_type="application/zip", data_page=True)

    # ------------------------------------------------------------ configuration

    def configure(self, config: dict) -> dict:
        known = {"activities_per_month", "today", "late_edits", "url_ttl_seconds", "expire_next_urls",
                 "one_digit_share", "undated_share", "unknown_share", "late_start_share", "fault_options"}
        unknown = set(config) - known
        if unknown:
            raise ValueError(f"unknown srwr config key(s) {sorted(unknown)}; known: {sorted(known)}")
        ds = self.dataset
        result: dict = {}
        if "activities_per_month" in config:
            ds.set_activities_per_month(config["activities_per_month"])
        for name in ("one_digit_share", "undated_share", "unknown_share", "late_start_share"):
            if name in config:
                ds.set_share(name, config[name])
        if "today" in config:
            ds.set_today(config["today"])
        for name in ("url_ttl_seconds", "expire_next_urls"):
            if name in config:
                value = config[name]
                if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                    raise ValueError(f"{name} must be an integer >= 0")
                with self._lock:
                    setattr(self, name, value)
        if "fault_options" in config:
            options = dict(config["fault_options"] or {})
            if set(options) - {"drop_field"}:
                raise ValueError("fault_options knows drop_field only")
            drop = options.get("drop_field")
            if drop is not None:
                drop = {**DEFAULT_DROP, **drop}
                if set(drop) != set(DEFAULT_DROP) or not isinstance(drop["position"], int) or drop["position"] < 3:
                    raise ValueError('fault_options.drop_field is {"record_type": "001", "position": n >= 3}')
                options["drop_field"] = drop
            with self._lock:
                self.fault_options = options
        if "late_edits" in config:
            edits = config["late_edits"]
            done = []
            for edit in edits if isinstance(edits, list) else [edits]:
                if not isinstance(edit, dict) or not isinstance(edit.get("month"), str) or len(edit["month"]) != 7:
                    raise ValueError('late_edits needs {"month": "YYYY-MM", "n": N}')
                year, month = int(edit["month"][:4]), int(edit["month"][5:7])
                ids = ds.apply_late_edits(year, month, int(edit.get("n", 1)))
                done.append({"month": edit["month"], "n": len(ids), "activity_ids": ids})
            result["late_edits"] = done
        return {**self.describe(), **result}

    def describe(self) -> dict:
        return {**self.dataset.describe(), "url_ttl_seconds": self.url_ttl_seconds,
                "expire_next_urls": self.expire_next_urls, "urls_issued": self.issued,
                "fault_options": self.fault_options}

    def reset_data(self) -> None:
        with self._lock:
            self.url_ttl_seconds = self._initial_ttl
            self.expire_next_urls = 0
            self.issued = 0
            self.fault_options = {}
        self.dataset.reset()


def install_srwr(server, dataset: SrwrDataset | None = None, **api_kwargs) -> SrwrDataset:
    """Serve the SRWR export API on ``server``; returns the dataset (``server.srwr``)."""
    dataset = dataset if dataset is not None else SrwrDataset()
    server.install(SrwrApi(dataset, **api_kwargs))
    return dataset
