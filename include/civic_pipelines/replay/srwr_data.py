"""SRWR (Scottish Road Works Register) export files, generated: activities per month, their
headerless CSV lines and the zipped year, month and day files, with late edits and the data
faults' variants. Deterministic per (seed, year, month); no SRWR row is public (contract
*Volumes*). The two-step export API that serves them is in ``srwr.py``, whose docstring
describes the file format.
"""

from __future__ import annotations

import calendar
import csv
import datetime as _dt
import io
import random
import threading

from civic_pipelines.replay import horizon
from civic_pipelines.replay.zip_files import build_zip, etag_for

FIRST_YEAR = 2020  # the contract's example year; the register's first export year is not documented
MONTH_CODES = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
DEFAULT_SEED = 20240101
DEFAULT_ACTIVITIES = 120
# Fields per record type in the generated file (the contract gives only the positions it names).
RECORD_WIDTHS = {"001": 14, "007": 15, "008": 24, "010": 12, "099": 6}
UNKNOWN_TYPES = ("002", "036", "041", "555")

# Contract code lists (incomplete there too).
WORK_CATEGORIES = [f"{n:02d}" for n in range(1, 27)]
STATUSES = ["01", "04", "05", "07", "15", "18"]
TRAFFIC_MANAGEMENT = [f"{n:02d}" for n in range(0, 42)]
SITE_LOCATIONS = [f"{n:02d}" for n in range(1, 13)]  # not in the contract: the replay's own list

COUNCILS = [
    "Aberdeen City Council",
    "Aberdeenshire Council",
    "Angus Council",
    "Argyll and Bute Council",
    "City of Edinburgh Council",
    "Clackmannanshire Council",
    "Comhairle nan Eilean Siar",
    "Dumfries and Galloway Council",
    "Dundee City Council",
    "East Ayrshire Council",
    "East Dunbartonshire Council",
    "East Lothian Council",
    "East Renfrewshire Council",
    "Falkirk Council",
    "Fife Council",
    "Glasgow City Council",
    "Highland Council",
    "Inverclyde Council",
    "Midlothian Council",
    "Moray Council",
    "North Ayrshire Council",
    "North Lanarkshire Council",
    "Orkney Islands Council",
    "Perth and Kinross Council",
    "Renfrewshire Council",
    "Scottish Borders Council",
    "Shetland Islands Council",
    "South Ayrshire Council",
    "South Lanarkshire Council",
    "Stirling Council",
    "West Dunbartonshire Council",
    "West Lothian Council",
]
STREETS = [
    "Princes Street, Edinburgh",
    "Leith Walk, Edinburgh",
    "Sauchiehall Street, Glasgow",
    "Great Western Road, Glasgow",
    "Union Street, Aberdeen",
    "Murraygate, Dundee",
    "High Street, Perth",
    "Academy Street, Inverness",
    "King Street, Stirling",
    "Bridge Street, Kilmarnock",
    'Outside "The Auld Hoose", St Leonard\'s Street, Edinburgh',
    "A9 Dunkeld to Pitlochry",
]
PROMOTERS = [f"{n:04d}" for n in (1001, 1002, 1003, 2101, 2102, 3050, 4000, 4001, 5200, 7700)]
# The data faults this module implements on full downloads (see the docstring).
MODULE_FAULTS = (
    "malformed_row",
    "empty_month",
    "drop_field",
    "new_field",
    "retype_field",
    "truncate_archive",
    "corrupt_archive",
)
DEFAULT_DROP = {"record_type": "001", "position": 5}
NEW_FIELD_VALUE = "replay-new-field"


def _month_key(year: int, month: int) -> str:
    return f"{year:04d}-{month:02d}"


def _last_day(year: int, month: int) -> int:
    return calendar.monthrange(year, month)[1]


# ---------------------------------------------------------------- the data


class SrwrDataset:
    """Generated activities per month, their CSV lines and the zipped files per identifier."""

    def __init__(
        self,
        seed: int = DEFAULT_SEED,
        activities_per_month: int = DEFAULT_ACTIVITIES,
        today: str | _dt.date | None = None,
        one_digit_share: float = 0.25,
        undated_share: float = 0.03,
        unknown_share: float = 0.15,
        first_year: int = FIRST_YEAR,
        late_start_share: float = 0.0,
    ) -> None:
        self.seed = seed
        self.first_year = first_year
        self._lock = threading.RLock()
        self._initial = dict(
            activities_per_month=activities_per_month,
            today=today,
            one_digit_share=one_digit_share,
            undated_share=undated_share,
            unknown_share=unknown_share,
            late_start_share=late_start_share,
        )
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
                end = (
                    None
                    if rng.random() < 0.1
                    else phase_start + _dt.timedelta(days=rng.randint(0, 20), hours=rng.randint(1, 8))
                )
                phases.append(
                    {
                        "number": number,
                        "location": rng.choice(STREETS),
                        "work_category": self._code(rng, rng.choice(WORK_CATEGORIES)),
                        "status": self._code(rng, rng.choice(STATUSES)),
                        "coordinates": f"POINT ({rng.randint(200000, 400000)} {rng.randint(600000, 900000)})",
                        "start": phase_start,
                        "end": end,
                        "traffic_management": self._code(rng, rng.choice(TRAFFIC_MANAGEMENT)),
                        "footway": rng.choice(("Y", "N", "N")),
                    }
                )
            council = rng.randrange(len(COUNCILS))
            unknown = []
            if rng.random() < self.unknown_share:
                record_type = rng.choice(UNKNOWN_TYPES)
                unknown.append((record_type, [str(rng.randint(0, 999)) for _ in range(rng.randint(1, 5))]))
            out.append(
                {
                    "id": activity_id,
                    "month": _month_key(year, month),
                    "day": day,
                    "dated": dated,
                    "first_start": start if dated else None,
                    "promoter": rng.choice(PROMOTERS),
                    "phases": phases,
                    "sites": [
                        {"location_code": self._code(rng, rng.choice(SITE_LOCATIONS))} for _ in range(rng.randint(0, 2))
                    ],
                    "district": {
                        "key_1": f"{9001 + council:04d}",
                        "key_2": f"{rng.randint(1, 4):02d}",
                        "name": COUNCILS[council],
                    },
                    "unknown": unknown,
                    "edits": 0,
                }
            )
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
            record(
                "007",
                {
                    6: phase["location"],
                    7: str(phase["number"]),
                    9: phase["work_category"],
                    10: phase["status"],
                    12: phase["coordinates"],
                },
            )
            if activity["dated"]:
                end = phase["end"]
                record(
                    "008",
                    {
                        3: str(phase["number"]),
                        4: phase["start"].strftime("%Y-%m-%d"),
                        6: phase["start"].strftime("%H:%M"),
                        8: end.strftime("%Y-%m-%d") if end else "",
                        9: end.strftime("%H:%M") if end else "",
                        20: phase["traffic_management"],
                        21: phase["footway"],
                    },
                )
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
                phase["status"] = (
                    STATUSES[(STATUSES.index(current) + 1) % len(STATUSES)] if current in STATUSES else "07"
                )
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
        return (
            [str(y) for y in range(self.first_year, today.year)]
            + list(MONTH_CODES[: today.month - 1])
            + [f"{d:02d}" for d in range(1, today.day)]
        )

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

    def faulted_file(
        self, identifier: str, faults=("malformed_row",), drop: dict | None = None
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
            records = [
                fields[: drop["position"]] + fields[drop["position"] + 1 :]
                if fields[1] == drop["record_type"]
                else fields
                for fields in records
            ]
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
            body = body[:at] + bytes((i * 73 + 41) & 0xFF for i in range(16)) + body[at + 16 :]
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
