"""Seattle SPD Crime Data (Socrata dataset ``tazs-3rd5``) for the replay server.

Owns the *data*: deterministic month-by-month offense rows in the SODA JSON wire form of either
column schema ("A", the original; "B", the NIBRS republication), the Socrata view columns, the
dataset watermark (``rows_updated_at``) and late edits. It knows nothing about HTTP; the SODA
endpoint lives in ``soda.py``.

What is real and what is generated (see ``data/README.md``):

- the 100 rows of ``data/seattle_crime_sample_schema_a.csv`` are real (a public web export);
  they are converted to the API form and added to their months (2020-01, 2020-02, 2021-08,
  2021-09) when the schema is A;
- every other row is generated from a seed derived from ``(seed, month)``. Locations
  (precinct/sector/beat/MCPP combinations, address shapes, coordinates), the share of withheld
  locations, the offense-start lag and the offense duration are drawn from the real rows; the offense
  mix (the sample is robbery-only) uses the standard NIBRS offense vocabulary.

Wire form: flat objects, every value a string, null fields omitted, timestamps as Socrata
floating timestamps ``YYYY-MM-DDTHH:MM:SS.000`` (Pacific wall time, no zone).
"""

from __future__ import annotations

import calendar
import csv
import datetime as _dt
import random
import re
import threading
from base64 import b32encode as _b32encode
from pathlib import Path

from civic_pipelines.replay import horizon
from civic_pipelines.replay.dataset_support import LoadedOnce, MonthlyRows, edit_count
from civic_pipelines.replay.seeds import mix64, seed_for

DATASET_ID = "tazs-3rd5"
DATASET_NAME = "SPD Crime Data: 2008-Present"
FIRST_MONTH = "2008-01"
# The last month the tests and contract figures were written against; the dataset itself is updated
# daily, so the served range reaches today's month once the calendar passes this (horizon.py).
DOCUMENTED_LAST_MONTH = "2026-12"
SCHEMAS = ("A", "B")
REPORT_FIELD = {"A": "report_datetime", "B": "report_date_time"}
SAMPLE_CSV = Path(__file__).parent / "data" / "seattle_crime_sample_schema_a.csv"


def _columns(table: str) -> list[tuple[str, str, str]]:
    """The ``(API field name, CSV export header, Socrata dataTypeName)`` rows of an ``a | b | c``
    table (``#`` starts a comment)."""
    rows = [line.split("#", 1)[0].strip() for line in table.splitlines()]
    return [tuple(part.strip() for part in row.split("|")) for row in rows if row]


SCHEMA_A_COLUMNS: list[tuple[str, str, str]] = _columns("""
    report_number          | Report Number          | text
    offense_id             | Offense ID             | number
    offense_start_datetime | Offense Start DateTime | calendar_date
    offense_end_datetime   | Offense End DateTime   | calendar_date
    report_datetime        | Report DateTime        | calendar_date
    group_a_b              | Group A B              | text
    crime_against_category | Crime Against Category | text
    offense_parent_group   | Offense Parent Group   | text
    offense                | Offense                | text
    offense_code           | Offense Code           | text
    precinct               | Precinct               | text
    sector                 | Sector                 | text
    beat                   | Beat                   | text
    mcpp                   | MCPP                   | text
    _100_block_address     | 100 Block Address      | text
    longitude              | Longitude              | number
    latitude               | Latitude               | number
""")
SCHEMA_B_COLUMNS: list[tuple[str, str, str]] = _columns("""
    report_number                  | Report Number                  | text
    report_date_time               | Report DateTime                | calendar_date
    offense_id                     | Offense ID                     | number
    offense_date                   | Offense Date                   | calendar_date
    nibrs_group_a_b                | NIBRS Group AB                 | text
    nibrs_crime_against_category   | NIBRS Crime Against Category   | text
    offense_sub_category           | Offense Sub Category           | text
    shooting_type_group            | Shooting Type Group            | text
    block_address                  | Block Address                  | text
    latitude                       | Latitude                       | text  # B: number or REDACTED
    longitude                      | Longitude                      | text
    beat                           | Beat                           | text
    precinct                       | Precinct                       | text
    sector                         | Sector                         | text
    neighborhood                   | Neighborhood                   | text
    reporting_area                 | Reporting Area                 | text
    # The contract did not capture the export headers of the next two; the names are Title Case guesses.
    offense_category               | Offense Category               | text
    nibrs_offense_code_description | NIBRS Offense Code Description | text
    nibrs_offense_code             | NIBRS_offense_code             | text
    census_block_2020              | Census Block 2020              | text
""")
COLUMNS = {"A": SCHEMA_A_COLUMNS, "B": SCHEMA_B_COLUMNS}

PRECINCT_B = {"N": "North", "E": "East", "S": "South", "W": "West", "SW": "Southwest"}

# NIBRS offenses: (group_a_b, crime_against_category, offense_parent_group, offense, code, weight,
# schema B offense_category). Weights approximate Seattle's offense mix (theft, burglary and
# vandalism dominate; robbery a few percent).
_V, _P, _O = "VIOLENT CRIME", "PROPERTY CRIME", "ALL OTHER"
OFFENSES: list[tuple[str, str, str, str, str, float, str]] = [
    ("A", "PROPERTY", "LARCENY-THEFT", "Theft From Motor Vehicle", "23F", 10.0, _P),
    ("A", "PROPERTY", "LARCENY-THEFT", "All Other Larceny", "23H", 9.0, _P),
    ("A", "PROPERTY", "LARCENY-THEFT", "Shoplifting", "23C", 5.0, _P),
    ("A", "PROPERTY", "LARCENY-THEFT", "Theft From Building", "23D", 3.0, _P),
    ("A", "PROPERTY", "LARCENY-THEFT", "Theft of Motor Vehicle Parts or Accessories", "23G", 2.5, _P),
    ("A", "PROPERTY", "LARCENY-THEFT", "Pocket-picking", "23A", 0.3, _P),
    ("A", "PROPERTY", "LARCENY-THEFT", "Purse-snatching", "23B", 0.2, _P),
    ("A", "PROPERTY", "LARCENY-THEFT", "Theft From Coin-Operated Machine or Device", "23E", 0.1, _P),
    ("A", "PROPERTY", "BURGLARY/BREAKING&ENTERING", "Burglary/Breaking & Entering", "220", 11.0, _P),
    (
        "A",
        "PROPERTY",
        "DESTRUCTION/DAMAGE/VANDALISM OF PROPERTY",
        "Destruction/Damage/Vandalism of Property",
        "290",
        11.0,
        _O,
    ),
    ("A", "PROPERTY", "MOTOR VEHICLE THEFT", "Motor Vehicle Theft", "240", 7.0, _P),
    ("A", "PROPERTY", "FRAUD OFFENSES", "False Pretenses/Swindle/Confidence Game", "26A", 2.2, _O),
    ("A", "PROPERTY", "FRAUD OFFENSES", "Credit Card/Automated Teller Machine Fraud", "26B", 1.2, _O),
    ("A", "PROPERTY", "FRAUD OFFENSES", "Impersonation", "26C", 0.4, _O),
    ("A", "PROPERTY", "FRAUD OFFENSES", "Identity Theft", "26F", 2.0, _O),
    ("A", "PROPERTY", "FRAUD OFFENSES", "Wire Fraud", "26E", 0.4, _O),
    ("A", "PROPERTY", "ROBBERY", "Robbery", "120", 2.6, _V),
    ("A", "PROPERTY", "STOLEN PROPERTY OFFENSES", "Stolen Property Offenses", "280", 0.6, _O),
    ("A", "PROPERTY", "COUNTERFEITING/FORGERY", "Counterfeiting/Forgery", "250", 0.5, _O),
    ("A", "PROPERTY", "EMBEZZLEMENT", "Embezzlement", "270", 0.2, _O),
    ("A", "PROPERTY", "EXTORTION/BLACKMAIL", "Extortion/Blackmail", "210", 0.15, _O),
    ("A", "PROPERTY", "ARSON", "Arson", "200", 0.3, _P),
    ("A", "PERSON", "ASSAULT OFFENSES", "Simple Assault", "13B", 7.0, _O),
    ("A", "PERSON", "ASSAULT OFFENSES", "Aggravated Assault", "13A", 3.0, _V),
    ("A", "PERSON", "ASSAULT OFFENSES", "Intimidation", "13C", 2.0, _O),
    ("A", "PERSON", "SEX OFFENSES", "Rape", "11A", 0.3, _V),
    ("A", "PERSON", "SEX OFFENSES", "Fondling", "11D", 0.35, _O),
    ("A", "PERSON", "SEX OFFENSES", "Sodomy", "11B", 0.05, _V),
    ("A", "PERSON", "HOMICIDE OFFENSES", "Murder & Nonnegligent Manslaughter", "09A", 0.03, _V),
    ("A", "PERSON", "KIDNAPPING/ABDUCTION", "Kidnapping/Abduction", "100", 0.15, _O),
    ("A", "SOCIETY", "DRUG/NARCOTIC OFFENSES", "Drug/Narcotic Violations", "35A", 1.5, _O),
    ("A", "SOCIETY", "DRUG/NARCOTIC OFFENSES", "Drug Equipment Violations", "35B", 0.3, _O),
    ("A", "SOCIETY", "WEAPON LAW VIOLATIONS", "Weapon Law Violations", "520", 0.8, _O),
    ("A", "SOCIETY", "PROSTITUTION OFFENSES", "Prostitution", "40A", 0.1, _O),
    ("A", "SOCIETY", "PORNOGRAPHY/OBSCENE MATERIAL", "Pornography/Obscene Material", "370", 0.08, _O),
    ("A", "SOCIETY", "ANIMAL CRUELTY", "Animal Cruelty", "720", 0.03, _O),
    ("A", "NOT_A_CRIME", "JUSTIFIABLE HOMICIDE", "Justifiable Homicide", "09C", 0.01, _O),
    ("B", "SOCIETY", "TRESPASS OF REAL PROPERTY", "Trespass of Real Property", "90J", 3.0, _O),
    ("B", "SOCIETY", "DRIVING UNDER THE INFLUENCE", "Driving Under the Influence", "90D", 1.2, _O),
    ("B", "SOCIETY", "ALL OTHER OFFENSES", "All Other Offenses", "90Z", 2.0, _O),
    ("B", "SOCIETY", "FAMILY OFFENSES, NONVIOLENT", "Family Offenses, Nonviolent", "90F", 0.3, _O),
    ("B", "SOCIETY", "DISORDERLY CONDUCT", "Disorderly Conduct", "90C", 0.2, _O),
    ("B", "SOCIETY", "LIQUOR LAW VIOLATIONS", "Liquor Law Violations", "90G", 0.1, _O),
    ("B", "SOCIETY", "CURFEW/LOITERING/VAGRANCY VIOLATIONS", "Curfew/Loitering/Vagrancy Violations", "90B", 0.05, _O),
    ("B", "SOCIETY", "PEEPING TOM", "Peeping Tom", "90H", 0.03, _O),
    ("B", "PROPERTY", "BAD CHECKS", "Bad Checks", "90A", 0.03, _O),
]
_OFFENSE_CUM: list[float] = []
_acc = 0.0
for _entry in OFFENSES:
    _acc += _entry[5]
    _OFFENSE_CUM.append(_acc)
ROBBERY = next(o for o in OFFENSES if o[4] == "120")

# Report hour-of-day profile (few reports before dawn).
_HOUR_WEIGHTS = [4, 3, 3, 2.5, 2, 2, 2.5, 3.5, 4.5, 5, 5, 5.5, 5.5, 5.5, 5.5, 5.5, 5.5, 5.5, 5.5, 5, 5, 5, 4.5, 4.5]
_HOUR_CUM = [sum(_HOUR_WEIGHTS[: i + 1]) for i in range(24)]
# Offense rows per month: a yearly level times a seasonal factor (summer high, winter low).
_YEAR_LEVEL = {
    2008: 5700,
    2009: 5700,
    2010: 5600,
    2011: 5600,
    2012: 5800,
    2013: 5900,
    2014: 6300,
    2015: 6300,
    2016: 6400,
    2017: 6400,
    2018: 6300,
    2019: 6400,
    2020: 6600,
    2021: 6700,
    2022: 6900,
    2023: 6700,
    2024: 6400,
    2025: 6200,
    2026: 6100,
}  # a year after 2026 repeats 2026's level (horizon.carried_forward): no figure is invented
_SEASON = [0.96, 0.93, 0.98, 0.97, 1.00, 1.01, 1.06, 1.07, 1.03, 1.02, 0.98, 0.97]
_SPECIAL = {(2020, 5): 1.75, (2020, 6): 1.2}  # May 2020 had 11,692 offenses (contract, Volumes)
_MIN_ROWS, _MAX_ROWS = 5000, 12000

# Offense start lag before the report (hours) and offense duration (minutes) of the real rows; the
# generator draws from these empirically (with jitter). Filled by _load_sample().
_MASK60 = (1 << 60) - 1
_BLOCK_RE = re.compile(r"^(\d+)XX BLOCK OF (.+)$")
_EPOCH_ORD = _dt.date(1970, 1, 1).toordinal()
_DAY_CACHE: dict[int, str] = {}
_GEN_ID_BASE = 30_000_000_000  # generated offense_ids: base + month_index * 20M + row index
_GEN_ID_MONTH_STRIDE = 20_000_000


# ---------------------------------------------------------------- small helpers


def _seed_for(*parts) -> int:
    return seed_for(0x243F6A8885A308D3, *parts)


def _day_str(day: int) -> str:
    s = _DAY_CACHE.get(day)
    if s is None:
        s = _dt.date.fromordinal(_EPOCH_ORD + day).isoformat()
        _DAY_CACHE[day] = s
    return s


def _secs(y: int, m: int, d: int = 1, hh: int = 0, mm: int = 0, ss: int = 0) -> int:
    """Naive wall-clock seconds since 1970-01-01T00:00:00 (no zone arithmetic)."""
    return (_dt.date(y, m, d).toordinal() - _EPOCH_ORD) * 86400 + hh * 3600 + mm * 60 + ss


def fmt_floating(secs: int) -> str:
    day, rest = divmod(secs, 86400)
    hh, rest = divmod(rest, 3600)
    mm, ss = divmod(rest, 60)
    return f"{_day_str(day)}T{hh:02d}:{mm:02d}:{ss:02d}.000"


def parse_floating(value: str) -> int:
    d = _dt.datetime.strptime(value[:19], "%Y-%m-%dT%H:%M:%S")
    return _secs(d.year, d.month, d.day, d.hour, d.minute, d.second)


def fmt_fixed_utc(epoch: int) -> str:
    """Socrata fixed timestamp (system fields): UTC with a Z. (Epoch seconds count days the same way
    as the naive wall-clock seconds used here, so the formatter is shared.)"""
    return fmt_floating(int(epoch)) + "Z"


def _spring_forward_days() -> set[int]:
    """Days whose 02:00-03:00 Pacific wall time does not exist (US rules since 1987)."""
    days = set()
    for year in range(1987, 2031):
        if year >= 2007:  # second Sunday of March
            first = _dt.date(year, 3, 1)
            day = first + _dt.timedelta(days=(6 - first.weekday()) % 7 + 7)
        else:  # first Sunday of April
            first = _dt.date(year, 4, 1)
            day = first + _dt.timedelta(days=(6 - first.weekday()) % 7)
        days.add(day.toordinal() - _EPOCH_ORD)
    return days


_GAP_DAYS = _spring_forward_days()


def _no_gap(secs: int) -> int:
    """Move a wall time out of the spring-forward hour (it never occurs in Pacific local time)."""
    day, rest = divmod(secs, 86400)
    if day in _GAP_DAYS and 7200 <= rest < 10800:
        return secs + 3600
    return secs


def month_index(month: str) -> int:
    y, m = parse_month(month)
    return (y - 2008) * 12 + (m - 1)


def parse_month(month: str) -> tuple[int, int]:
    if not isinstance(month, str) or not re.fullmatch(r"\d{4}-(0[1-9]|1[0-2])", month):
        raise ValueError(f"month {month!r} is not in YYYY-MM form")
    return int(month[:4]), int(month[5:7])


def months_between(first: str, last: str) -> list[str]:
    """Inclusive list of YYYY-MM from first to last (empty when last < first)."""
    y, m = parse_month(first)
    ly, lm = parse_month(last)
    out = []
    while (y, m) <= (ly, lm):
        out.append(f"{y:04d}-{m:02d}")
        y, m = (y + 1, 1) if m == 12 else (y, m + 1)
    return out


def last_month() -> str:
    """The last month served: through today's month (a rolling horizon, see horizon.py)."""
    return horizon.last_month(DOCUMENTED_LAST_MONTH)


def all_months() -> list[str]:
    return months_between(FIRST_MONTH, last_month())


_ROW_ID_KEYS: dict[int, int] = {}


def row_id_for(offense_id: int, seed: int) -> str:
    """A Socrata-looking ``:id`` (``row-xxxx.xxxx~xxxx``); a bijection of the 60-bit offense_id, so unique."""
    key = _ROW_ID_KEYS.get(seed)
    if key is None:
        key = _ROW_ID_KEYS[seed] = _seed_for("row-id", seed) & _MASK60
    x = (offense_id ^ key) & _MASK60
    x = (x * 0x5DEECE66D1F3B5) & _MASK60  # odd multiplier: bijective mod 2**60
    x ^= x >> 29
    s = _b32encode((x << 4).to_bytes(8, "big"))[:12].decode().lower()  # 12 chars = the 60 bits
    return f"row-{s[0:4]}.{s[4:8]}~{s[8:12]}"


# ---------------------------------------------------------------- the real sample rows

_SAMPLE_HEADER_TO_API = {header: field for field, header, _ in SCHEMA_A_COLUMNS}


def _export_to_floating(value: str) -> str | None:
    if not value:
        return None
    return _dt.datetime.strptime(value, "%m/%d/%Y %I:%M:%S %p").strftime("%Y-%m-%dT%H:%M:%S.000")


def load_sample_rows(path: Path = SAMPLE_CSV) -> list[dict]:
    """The real export rows converted to the API wire form (schema A): snake_case, ISO floating
    timestamps, empty fields omitted, values kept as the export printed them."""
    rows = []
    with open(path, newline="", encoding="utf-8") as fh:
        for record in csv.DictReader(fh):
            row = {}
            for field, _header, _type in SCHEMA_A_COLUMNS:
                value = record[_header]
                if field in ("offense_start_datetime", "offense_end_datetime", "report_datetime"):
                    value = _export_to_floating(value)
                if value:
                    row[field] = value
            rows.append(row)
    return rows


class _Sample(LoadedOnce):
    """Real rows plus what the generator learns from them (loaded once per process)."""

    def __init__(self) -> None:
        self.rows = load_sample_rows()
        self.by_month: dict[str, list[dict]] = {}
        for row in self.rows:
            self.by_month.setdefault(row["report_datetime"][:7], []).append(row)
        self.report_numbers = {row["report_number"] for row in self.rows}
        self.located = []  # (precinct, sector, beat, mcpp, address, lon, lat)
        self.areas = []  # (precinct, sector, beat, mcpp) of every row, withheld included
        self.lag_hours = []
        self.duration_minutes = []
        for row in self.rows:
            area = (row["precinct"], row["sector"], row["beat"], row["mcpp"])
            self.areas.append(area)
            if row.get("_100_block_address"):
                self.located.append(area + (row["_100_block_address"], row["longitude"], row["latitude"]))
            start = parse_floating(row["offense_start_datetime"])
            self.lag_hours.append((parse_floating(row["report_datetime"]) - start) / 3600.0)
            if "offense_end_datetime" in row:
                self.duration_minutes.append((parse_floating(row["offense_end_datetime"]) - start) / 60.0)
        self.withheld_share = 1 - len(self.located) / len(self.rows)  # 5 of 100
        self.end_share = len(self.duration_minutes) / len(self.rows)  # 49 of 100


# ---------------------------------------------------------------- the dataset


def _fmt_coord(value: float, places: int) -> str:
    return f"{value:.{places}f}".rstrip("0").rstrip(".")


class SeattleCrimeDataset(MonthlyRows):
    """Deterministic Seattle crime offenses, generated one month at a time and cached.

    ``rows_for_month(month)`` returns the wire rows (schema A or B) whose report time falls in
    that month. Rows are generated once per ``(seed, month)`` into a schema-neutral record, then
    rendered per schema, so switching the schema keeps offense_ids, times and late edits.
    """

    def __init__(
        self,
        schema: str = "A",
        seed: int = 20240101,
        rows_per_month: int | None = None,
        rows_updated_at: int = 1767225600,
    ) -> None:
        if schema not in SCHEMAS:
            raise ValueError(f"schema must be one of {SCHEMAS}, not {schema!r}")
        if rows_per_month is not None and int(rows_per_month) < 0:
            raise ValueError("rows_per_month must be >= 0")
        self.schema = schema
        self.seed = int(seed)
        self.rows_per_month = None if rows_per_month is None else int(rows_per_month)
        self.rows_updated_at = int(rows_updated_at)
        self.dataset_id = DATASET_ID
        self.name = DATASET_NAME
        self.version = 0  # bumped on every change that alters served rows (caches key on it)
        self._lock = threading.RLock()
        self._canon: dict[str, list[dict]] = {}
        self._wire: dict[tuple[str, str], list[tuple[dict, dict]]] = {}
        self._edit_counts: dict[str, int] = {}
        self._sample = _Sample.get()
        self._pool = self._build_location_pool()

    # ------------------------------------------------------------ configuration

    @property
    def report_field(self) -> str:
        return REPORT_FIELD[self.schema]

    def set_schema(self, schema: str) -> None:
        if schema not in SCHEMAS:
            raise ValueError(f"schema must be one of {SCHEMAS}, not {schema!r}")
        with self._lock:
            if schema != self.schema:
                self.schema = schema
                self.version += 1

    def set_rows_per_month(self, rows_per_month: int | None) -> None:
        """Change the month size; regenerates every month (late edits are dropped)."""
        if rows_per_month is not None and int(rows_per_month) < 0:
            raise ValueError("rows_per_month must be >= 0")
        with self._lock:
            self.rows_per_month = None if rows_per_month is None else int(rows_per_month)
            self._canon.clear()
            self._wire.clear()
            self._edit_counts.clear()
            self.version += 1

    def cached_months(self) -> list[str]:
        """Months generated so far (the server generates only the months a query touches)."""
        with self._lock:
            return sorted(self._canon)

    def columns(self) -> list[dict]:
        """Socrata view metadata columns of the current schema."""
        return [{"fieldName": f, "name": n, "dataTypeName": t} for f, n, t in COLUMNS[self.schema]]

    def field_types(self) -> dict[str, str]:
        return {f: t for f, _n, t in COLUMNS[self.schema]}

    def month_count(self, month: str) -> int:
        """Generated offense rows in a month (the real sample rows come on top, schema A only)."""
        y, m = parse_month(month)
        if not (FIRST_MONTH <= month <= last_month()):
            return 0
        if self.rows_per_month is not None:
            return self.rows_per_month
        rng = random.Random(_seed_for(self.seed, "count", month))
        days = calendar.monthrange(y, m)[1]
        n = (
            horizon.carried_forward(_YEAR_LEVEL, y)
            * _SEASON[m - 1]
            * days
            / 30.44
            * rng.uniform(0.96, 1.04)
            * _SPECIAL.get((y, m), 1.0)
        )
        return int(min(_MAX_ROWS, max(_MIN_ROWS, n)))

    # ------------------------------------------------------------ rows

    def rows_for_month(self, month: str) -> list[dict]:
        """The month's wire rows for the current schema (a new list; do not mutate the dicts)."""
        return [row for row, _sys in self.records_for_month(month)]

    def records_for_month(self, month: str) -> list[tuple[dict, dict]]:
        """``(wire row, system fields)`` pairs, cached; system fields are ``:id``, ``:created_at``,
        ``:updated_at``. The returned list is shared: do not mutate it."""
        with self._lock:
            schema = self.schema
            key = (schema, month)
            cached = self._wire.get(key)
            if cached is None:
                render = self._render_a if schema == "A" else self._render_b
                cached = [
                    (render(c), {":id": c["sysid"], ":created_at": c["created"], ":updated_at": c["updated"]})
                    for c in self._canonical(month)
                    if schema == "A" or not c["real"]
                ]
                self._wire[key] = cached
            return cached

    def apply_late_edits(self, month: str, n: int) -> list[str]:
        """Edit ``n`` rows of ``month`` in place (reclassify the offense, or move/withhold the
        location), keeping offense_id and report time; bump ``rows_updated_at`` by an hour and set
        the rows' ``:updated_at`` to it. Deterministic per (seed, month, number of earlier edits)."""
        n = edit_count(n)
        with self._lock:
            canon = self._canonical(month)
            visible = [i for i, c in enumerate(canon) if self.schema == "A" or not c["real"]]
            n = min(n, len(visible))
            count = self._edit_counts.get(month, 0)
            self._edit_counts[month] = count + 1
            rng = random.Random(_seed_for(self.seed, "edit", month, count))
            chosen = sorted(rng.sample(visible, n))
            self.rows_updated_at += 3600
            updated = fmt_fixed_utc(self.rows_updated_at)
            edited = []
            for i in chosen:
                c = dict(canon[i])
                if rng.random() < 0.6:
                    current = c["offense"][4]
                    offense = c["offense"]
                    while offense[4] == current:
                        offense = rng.choices(OFFENSES, cum_weights=_OFFENSE_CUM)[0]
                    c["offense"] = offense
                    c["unknown"] = None
                elif rng.random() < 0.3:
                    c["withheld"] = True
                    c["addr"] = None
                    c["lon"] = c["lat"] = "0"
                else:
                    loc = rng.choice(self._pool)
                    c.update(
                        precinct=loc[0],
                        sector=loc[1],
                        beat=loc[2],
                        mcpp=loc[3],
                        addr=loc[4],
                        lon=loc[5],
                        lat=loc[6],
                        reporting_area=loc[7],
                        census_block=loc[8],
                        withheld=False,
                    )
                c["updated"] = updated
                canon[i] = c
                edited.append(c["oid"])
            for schema in SCHEMAS:
                self._wire.pop((schema, month), None)
            self.version += 1
            return edited

    # ------------------------------------------------------------ generation

    def _build_location_pool(self) -> list[tuple]:
        """Locations seen in the real rows, plus nearby hundred-blocks on the same streets.

        Each entry: (precinct, sector, beat, mcpp, address, lon, lat, reporting_area, census_block);
        the last two are schema B fields with no real values in the sample, so they are generated."""
        rng = random.Random(_seed_for(self.seed, "locations"))
        pool = []
        for precinct, sector, beat, mcpp, address, lon, lat in self._sample.located:
            area = (precinct, sector, beat, mcpp)
            b_fields = (
                str(rng.randint(1000, 9999)),
                f"53033{rng.randint(1, 121) * 100:06d}{rng.randint(1000, 2040):04d}",
            )
            pool.append(area + (address, lon, lat) + b_fields)
            match = _BLOCK_RE.match(address)
            for _ in range(4):
                if match:
                    step = rng.choice((-3, -2, -1, 1, 2, 3))
                    number = max(1, int(match.group(1)) + step)
                    new_address = f"{number}XX BLOCK OF {match.group(2)}"
                    jitter = 0.0006 * abs(step)
                    new_lon = _fmt_coord(float(lon) + rng.uniform(-jitter, jitter), 9)
                    new_lat = _fmt_coord(float(lat) + rng.uniform(-jitter, jitter), 8)
                    pool.append(area + (new_address, new_lon, new_lat) + b_fields)
                else:  # an intersection: the same corner again (hot spots repeat)
                    pool.append(area + (address, lon, lat) + b_fields)
        return pool

    def _canonical(self, month: str) -> list[dict]:
        canon = self._canon.get(month)
        if canon is None:
            canon = self._generate(month)
            self._canon[month] = canon
        return canon

    def _generate(self, month: str) -> list[dict]:
        y, m = parse_month(month)
        target = self.month_count(month)
        sample = self._sample
        rng = random.Random(_seed_for(self.seed, "rows", month))
        records: list[dict] = []

        # how many offense rows each report has (most one; some 2-3), summing exactly to target
        sizes = []
        total = 0
        while total < target:
            u = rng.random()
            k = 1 if u < 0.85 else (2 if u < 0.97 else 3)
            k = min(k, target - total)
            sizes.append(k)
            total += k
        n_reports = len(sizes)
        days = calendar.monthrange(y, m)[1]
        start_of_month = _secs(y, m, 1)
        hours = rng.choices(range(24), cum_weights=_HOUR_CUM, k=n_reports)
        times = sorted(
            _no_gap(start_of_month + rng.randrange(days) * 86400 + h * 3600 + rng.randrange(3600)) for h in hours
        )
        offenses = rng.choices(OFFENSES, cum_weights=_OFFENSE_CUM, k=target)

        # report numbers YYYY-NNNNNN rise through the year (about 1,100 a day, as in the sample)
        start_of_year = _secs(y, 1, 1)
        per_day = min(2700, max(1100, int(n_reports / days * 1.3) + 1))
        previous_seq = -1
        base_id = _GEN_ID_BASE + month_index(month) * _GEN_ID_MONTH_STRIDE
        row_index = 0
        located, areas = self._pool, sample.areas
        lags, durations = sample.lag_hours, sample.duration_minutes
        withheld_share, end_share = sample.withheld_share, sample.end_share
        reserved = sample.report_numbers
        seed = self.seed

        for report_secs, size in zip(times, sizes):
            seq = max(previous_seq + 1, int((report_secs - start_of_year) * per_day / 86400))
            previous_seq = seq
            report_number = f"{y:04d}-{seq % 1_000_000:06d}"
            while report_number in reserved:
                seq += 1
                previous_seq = seq
                report_number = f"{y:04d}-{seq % 1_000_000:06d}"

            # offense start: the real lag distribution, jittered; minute precision
            u = rng.random()
            if u < 0.001:  # very old offense dates exist (1908-2007 in the real data)
                start = report_secs - int(rng.uniform(1, 30) * 365.25 * 86400)
                start = max(start, _secs(1908, 1, 1))
                start -= start % 86400
            else:
                lag = rng.choice(lags) * rng.uniform(0.75, 1.25) * 3600
                start = int(report_secs - lag)
                if u < 0.05:  # time unknown: recorded as midnight
                    start -= start % 86400
                elif u < 0.55:
                    start -= start % 300
                else:
                    start -= start % 60
            start = _no_gap(start)
            end = None
            if rng.random() < end_share:
                duration = rng.choice(durations) * rng.uniform(0.8, 1.2)
                end = _no_gap(start + int(duration) * 60)

            if rng.random() < withheld_share:
                area = rng.choice(areas)
                loc = area + (None, "0", "0", None, None)
                withheld = True
            else:
                loc = rng.choice(located)
                withheld = False
            # schema B only quirks, drawn for every report so both schemas share one random stream
            ooj = rng.random() < 0.008
            v = rng.random()
            neighborhood = "" if v < 0.005 else ("99" if v < 0.008 else None)
            if withheld and rng.random() < 0.5:
                neighborhood = "REDACTED"
            report_str = fmt_floating(report_secs)
            start_str = fmt_floating(start)
            end_str = fmt_floating(end) if end is not None else None
            publish_lag = 6 + (mix64(report_secs ^ seed) % 30)
            created = fmt_fixed_utc(report_secs + (8 + publish_lag) * 3600)

            for _ in range(size):
                oid = base_id + row_index
                offense = offenses[row_index]
                row_index += 1
                w = rng.random()
                unknown = ("999", "UNKNOW", "UNKNOWN")[int(w * 1000) % 3] if w < 0.004 else None
                records.append(
                    {
                        "rn": report_number,
                        "oid": str(oid),
                        "report": report_str,
                        "start": start_str,
                        "end": end_str,
                        "offense": offense,
                        "precinct": loc[0],
                        "sector": loc[1],
                        "beat": loc[2],
                        "mcpp": loc[3],
                        "addr": loc[4],
                        "lon": loc[5],
                        "lat": loc[6],
                        "reporting_area": loc[7],
                        "census_block": loc[8],
                        "withheld": withheld,
                        "ooj": ooj,
                        "neighborhood": neighborhood,
                        "unknown": unknown,
                        "real": False,
                        "sysid": row_id_for(oid, seed),
                        "created": created,
                        "updated": created,
                    }
                )

        for row in sample.by_month.get(month, ()):
            oid = int(row["offense_id"])
            report_secs = parse_floating(row["report_datetime"])
            created = fmt_fixed_utc(report_secs + (8 + 6 + mix64(report_secs ^ seed) % 30) * 3600)
            records.append(
                {
                    "rn": row["report_number"],
                    "oid": row["offense_id"],
                    "report": row["report_datetime"],
                    "start": row["offense_start_datetime"],
                    "end": row.get("offense_end_datetime"),
                    "offense": next(
                        (o for o in OFFENSES if o[4] == row["offense_code"] and o[3] == row["offense"]), ROBBERY
                    ),
                    "precinct": row["precinct"],
                    "sector": row["sector"],
                    "beat": row["beat"],
                    "mcpp": row["mcpp"],
                    "addr": row.get("_100_block_address"),
                    "lon": row["longitude"],
                    "lat": row["latitude"],
                    "reporting_area": None,
                    "census_block": None,
                    "withheld": not row.get("_100_block_address"),
                    "ooj": False,
                    "neighborhood": None,
                    "unknown": None,
                    "real": True,
                    "sysid": row_id_for(oid, seed),
                    "created": created,
                    "updated": created,
                }
            )
        if month in sample.by_month:
            records.sort(key=lambda c: (c["report"], int(c["oid"])))
        return records

    # ------------------------------------------------------------ rendering

    @staticmethod
    def _render_a(c: dict) -> dict:
        offense = c["offense"]
        row = {"report_number": c["rn"], "offense_id": c["oid"], "offense_start_datetime": c["start"]}
        if c["end"] is not None:
            row["offense_end_datetime"] = c["end"]
        row["report_datetime"] = c["report"]
        row["group_a_b"] = offense[0]
        row["crime_against_category"] = offense[1]
        row["offense_parent_group"] = offense[2]
        row["offense"] = offense[3]
        row["offense_code"] = offense[4]
        row["precinct"] = c["precinct"]
        row["sector"] = c["sector"]
        row["beat"] = c["beat"]
        row["mcpp"] = c["mcpp"]
        if c["addr"]:
            row["_100_block_address"] = c["addr"]
        row["longitude"] = c["lon"]
        row["latitude"] = c["lat"]
        return row

    @staticmethod
    def _render_b(c: dict) -> dict:
        offense = c["offense"]
        withheld = c["withheld"]
        unknown = c["unknown"]
        ooj = c["ooj"]
        row = {
            "report_number": c["rn"],
            "report_date_time": c["report"],
            "offense_id": c["oid"],
            "offense_date": c["start"],
            "nibrs_group_a_b": offense[0],
            "nibrs_crime_against_category": "NOT_A_CRIME" if unknown else offense[1],
            "offense_sub_category": unknown or offense[2],
            # shooting_type_group: its values are not in the contract, so it stays null (omitted)
            "block_address": "REDACTED" if withheld else c["addr"],
            "latitude": "REDACTED" if withheld else c["lat"],
            "longitude": "REDACTED" if withheld else c["lon"],
            "beat": "OOJ" if ooj else c["beat"],
            "precinct": "OOJ" if ooj else PRECINCT_B.get(c["precinct"], c["precinct"]),
            "sector": "99" if ooj else c["sector"],
            "neighborhood": "OOJ" if ooj else (c["neighborhood"] if c["neighborhood"] is not None else c["mcpp"]),
            "reporting_area": "REDACTED" if withheld else c["reporting_area"],
            "offense_category": "ALL OTHER" if unknown else offense[6],
        }
        if not unknown:
            row["nibrs_offense_code_description"] = offense[3]
        row["nibrs_offense_code"] = "999" if unknown else offense[4]
        row["census_block_2020"] = "REDACTED" if withheld else c["census_block"]
        return {k: v for k, v in row.items() if v is not None}
