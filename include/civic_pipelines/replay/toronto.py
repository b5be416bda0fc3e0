"""Toronto 311 Service Requests - Customer Initiated (Open Data Toronto, CKAN) for the replay server.

Owns the *data*: one deterministic CSV per calendar year (``SR<YYYY>.csv``), byte for byte in the
published shape, plus the per-year ``last_modified`` watermark and late edits. It knows nothing
about HTTP; the CKAN action API and the downloads live in ``ckan.py``.

The published file shape (``shared/contracts/toronto_311.md``):

- header ``Creation Date,Status,First 3 Chars of Postal Code,Intersection Street 1,
  Intersection Street 2,Ward,Service Request Type,Division,Section``; 9 text columns; no BOM;
- ``Creation Date`` is ``YYYY-MM-DD HH:MM:SS.0000000`` (seven fractional digits, Toronto wall
  time, no zone) and the file is sorted by it;
- lines end in CRLF; the bytes are latin-1 (not clean UTF-8);
- some lines have more fields than the header (an unquoted comma); readers skip them.

What is real and what is generated (see ``data/README.md``):

- the 30 rows of ``data/toronto_311_sample.csv`` are real (the first 5 rows of the 2010, 2011,
  2012, 2013, 2020 and 2022 files) and open those years' files verbatim;
- every other row is generated from a seed derived from ``(seed, year, month)``, one month at a
  time, so a late edit in one month leaves every other month's bytes unchanged.

Quirks and their counts are deterministic; :meth:`Toronto311Dataset.quirk_counts` reports them.
"""

from __future__ import annotations

import calendar
import csv
import datetime as _dt
import hashlib
import io
import random
import re
import threading
from collections import OrderedDict
from pathlib import Path

from civic_pipelines.replay import horizon
from civic_pipelines.replay.dataset_support import LoadedOnce, edit_count
from civic_pipelines.replay.zip_files import build_zip, etag_for  # noqa: F401 - also imported from here

PACKAGE_NAME = "311-service-requests-customer-initiated"
PACKAGE_ID = "2e54bc0e-4399-4076-b717-351df5918ae7"
PACKAGE_TITLE = "311 Service Requests - Customer Initiated"
FIRST_YEAR = 2010
# The last year the contract documents. Open Data Toronto adds a new SR<YYYY> resource every year,
# so ``current_through`` may name any day up to today's year (horizon.py): SR2027 appears in 2027.
DOCUMENTED_LAST_YEAR = 2026
DEFAULT_SEED = 20240101
# The 2026 resource's metadata was modified 2026-09-08 (contract, uncertain): the current year's
# file holds rows up to the day before.
DEFAULT_CURRENT_THROUGH = "2026-09-07"
SAMPLE_CSV = Path(__file__).parent / "data" / "toronto_311_sample.csv"

HEADER = [
    "Creation Date",
    "Status",
    "First 3 Chars of Postal Code",
    "Intersection Street 1",
    "Intersection Street 2",
    "Ward",
    "Service Request Type",
    "Division",
    "Section",
]
HEADER_LINE = (",".join(HEADER) + "\r\n").encode("latin-1")
ENCODING = "latin-1"
DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}\.\d{7}$")

# Rows per year file. Real counts (kez-1a, after skipping bad lines; 2021 from vykuang) where the
# contract has them; 2014-2020 are a straight line between 2013 and 2021; 2026 is a full-year
# level like 2025 (the current year's file only holds rows up to ``current_through``).
YEAR_ROWS = {
    2010: 254_218,
    2011: 285_333,
    2012: 307_299,
    2013: 385_870,
    2014: 378_121,
    2015: 370_373,
    2016: 362_624,
    2017: 354_875,
    2018: 347_126,
    2019: 339_378,
    2020: 331_629,
    2021: 323_880,
    2022: 407_369,
    2023: 385_975,
    2024: 402_824,
    2025: 464_080,
    2026: 470_000,
}  # a year after 2026 repeats 2026's figure (horizon.carried_forward): no figure is invented
REAL_YEAR_ROWS = (2010, 2011, 2012, 2013, 2021, 2022, 2023, 2024, 2025)

# Share of rows located at an intersection (``Intersection Street 1`` filled, postal prefix
# ``Intersection``): real non-null counts from kez-1a for 2010-2012 and 2022-2025, interpolated
# between; and the share of those with ``Intersection Street 2`` empty.
_INTERSECTION_SHARE = {
    2010: 0.0706,
    2011: 0.0837,
    2012: 0.0782,
    2022: 0.1557,
    2023: 0.1576,
    2024: 0.1499,
    2025: 0.1632,
    2026: 0.1632,
}
_STREET2_EMPTY = {"old": 0.0004, "new": 0.0075}


def _intersection_share(year: int) -> float:
    if year in _INTERSECTION_SHARE or year > max(_INTERSECTION_SHARE):
        return horizon.carried_forward(_INTERSECTION_SHARE, year)
    lo, hi = 2012, 2022
    a, b = _INTERSECTION_SHARE[lo], _INTERSECTION_SHARE[hi]
    return a + (b - a) * (year - lo) / (hi - lo)


# ---------------------------------------------------------------- vocabularies

_MLS = "Municipal Licensing & Standards"
_TW = "Toronto Water"
_TS = "Transportation Services"
_SWMS = "Solid Waste Management Services"
_UF = "Urban Forestry"
_TAS = "Toronto Animal Services"
_TPPR = "Tree Protection and Plan Review"
_W, _S = "winter", "summer"
_NEW_ERA = 2022  # Status vocabulary and service request type names change (contract)

# (Service Request Type, Division, Section, weight, first year, last year, season)
# Weights of the first 20 are the real counts of the top 20 types over 2010-2013 + 2022-2025
# (kez-1a); the others are assumed. Pairs of type/division/section come from real rows where one
# exists; otherwise they are inferred from the type name, using only division and section values
# seen in real rows.
SERVICE_TYPES: list[tuple[str, str, str, float, int, int, str | None]] = [
    ("Property Standards", _MLS, "District Enforcement", 94487, 2010, 2026, None),
    ("Residential Furniture / Not Picked Up", _SWMS, "Collections", 83812, 2010, 2026, None),
    ("Sewer Service Line-Blocked", _TW, "District Ops", 71653, 2010, 2026, None),
    ("Res / Garbage / Not Picked Up", _SWMS, "Collections", 66825, 2010, 2026, None),
    ("Injured - Wildlife", _MLS, _TAS, 64628, _NEW_ERA, 2026, None),
    ("Residential: Bin: Repair or Replace Lid", _SWMS, "Collections", 62759, 2010, 2026, None),
    ("Res / Recycle / Not Picked Up", _SWMS, "Collections", 57951, 2010, 2026, None),
    ("Res / Organic Green Bin / Not Picked Up", _SWMS, "Collections", 57450, 2010, 2026, None),
    ("Road - Pot hole", _TS, "Road Operations", 53816, 2010, 2026, None),
    ("Publication Request - Solid Waste", "311", "Operations", 42546, 2010, 2026, None),
    ("Cadaver - Wildlife", _MLS, _TAS, 41894, _NEW_ERA, 2026, None),
    ("Water Service Line-Turn Off", _TW, "District Ops", 36673, 2010, 2026, None),
    ("Residential: Bin: Repair or Replace Body/Handle", _SWMS, "Collections", 36143, 2010, 2026, None),
    ("General Pruning", _UF, _TPPR, 34210, 2010, 2026, None),
    ("Res / Organic Bin / Replace Damaged", _SWMS, "Collections", 32194, 2010, 2026, None),
    ("Storm Clean Up", _UF, _TPPR, 31854, 2010, 2026, None),
    ("Residential: Garbage Bin: Exchange to Medium", _SWMS, "Collections", 30505, 2010, 2026, None),
    ("Road - Cleaning/Debris", _TS, "Road Operations", 30292, 2010, 2026, None),
    ("All / Hazardous Waste / Pick Up Request", _SWMS, "Collections", 30087, 2010, 2026, None),
    ("Long Grass and Weeds", _MLS, "District Enforcement", 29432, 2010, 2026, _S),
    # from the real sample rows (and the 2023-2025 rows shown in the kez-1a notebook)
    ("Water Service Line-Turn On", _TW, "District Ops", 20000, 2010, 2026, None),
    ("Watermain-Possible Break", _TW, "District Ops", 16000, 2010, 2026, None),
    ("Water Service Line-Leaking", _TW, "District Ops", 14000, 2010, 2026, None),
    ("Hydrant-Damage", _TW, "District Ops", 9000, 2010, 2026, None),
    ("Traffic Signal Maintenance", _TS, "TMC", 15000, 2010, 2026, None),
    ("Road - Sanding / Salting Required", _TS, "Road Operations", 22000, 2010, 2026, _W),
    ("Sidewalk Icy|| Needs Sand/Salt", _TS, "Road Operations", 12000, 2010, 2026, _W),
    ("Boulevard - Plough Damage", _TS, "Road Operations", 10000, 2010, 2026, _W),
    ("Sidewalk - Cleaning", _TS, "Road Operations", 9000, 2010, 2026, None),
    ("Residential: Garbage Bin: Exchange to Small", _SWMS, "Collections", 14000, 2010, 2026, None),
    ("Permit Inspection", _UF, _TPPR, 8000, 2010, 2026, None),
    ("Publication Request - Transportation", "311", "Operations", 6000, 2010, 2026, None),
    ("Noise", _MLS, "District Enforcement", 20000, 2010, _NEW_ERA - 1, None),
    # Toronto Animal Services: not in the files before 2013 (legacy page); upper-case codes until
    # the 2022 renaming (INJUR/DIST DOMESTIC -> Injured - Domestic, CADAVER WILDLIFE -> Cadaver - Wildlife)
    ("CADAVER WILDLIFE", _MLS, _TAS, 25000, 2013, _NEW_ERA - 1, None),
    ("STRAY AT LARGE", _MLS, _TAS, 12000, 2013, _NEW_ERA - 1, None),
    ("INJUR/DIST DOMESTIC", _MLS, _TAS, 9000, 2013, _NEW_ERA - 1, None),
    ("ENF/INVEST MUZZLE", _MLS, _TAS, 3000, 2013, _NEW_ERA - 1, None),
    ("Injured - Domestic", _MLS, _TAS, 9000, _NEW_ERA, 2026, None),
    ("Amplified Sound", _MLS, "Bylaw Enforcement", 18000, _NEW_ERA, 2024, None),
    ("Amplified Sound or Instrument Sound", _MLS, "Bylaw Enforcement", 18000, 2025, 2026, None),
    ("Unreasonable and Persistent Noise", _MLS, "Bylaw Enforcement", 9000, _NEW_ERA, 2026, None),
    ("Fireworks", _MLS, "Parks Enforcement", 3000, _NEW_ERA, 2026, None),
    ("Zoning Regulations Violations", _MLS, "Investigation Services", 7000, _NEW_ERA, 2026, None),
    ("Illegal Off-Street Parking", _TS, "Right of Way (ROW)", 10000, _NEW_ERA, 2026, None),
    ("Business Complaint", _MLS, "Business Licensing Enforcement", 6000, _NEW_ERA, 2026, None),
]
# 2024: ``Unknown`` status rows can have this type with Division and Section both ``Unknown``.
UNKNOWN_TYPE = ("Unknown - MLSBLEMMVN", "Unknown", "Unknown")
# The extra-field lines: a type whose comma was not replaced by ``||`` and is not quoted.
MALFORMED_TYPE = ("Sidewalk Icy, Needs Sand/Salt", _TS, "Road Operations")

_SEASON_FACTOR = {
    _W: (3.0, 3.0, 2.0, 0.6, 0.05, 0.05, 0.05, 0.05, 0.05, 0.6, 1.5, 3.0),
    _S: (0.15, 0.15, 0.3, 0.8, 2.2, 2.4, 2.4, 2.2, 1.6, 0.8, 0.3, 0.15),
}
# Rows per month: a mild seasonal level (assumed) times the days in the month, +-3 % noise.
_MONTH_LEVEL = (0.86, 0.80, 0.92, 0.98, 1.10, 1.12, 1.12, 1.08, 1.00, 0.98, 0.94, 0.86)
# Hour-of-day profile of creation times (assumed: a call centre's working day).
_HOUR_WEIGHTS = (
    1.2,
    0.8,
    0.6,
    0.5,
    0.5,
    0.7,
    1.5,
    3.0,
    5.0,
    6.5,
    7.0,
    7.0,
    6.8,
    6.8,
    6.5,
    6.2,
    5.5,
    4.5,
    3.8,
    3.4,
    3.0,
    2.6,
    2.1,
    1.6,
)
_HOUR_CUM = [sum(_HOUR_WEIGHTS[: i + 1]) for i in range(24)]
_HOURS = list(range(24))

OLD_STATUSES = ("Closed", "Cancelled")
NEW_STATUSES = ("Completed", "Cancelled", "Unknown")
_OLD_STATUS_CUM = [0.91, 1.0]
_NEW_STATUS_CUM = {2024: [0.81, 0.90, 1.0]}
_NEW_STATUS_CUM_DEFAULT = [0.86, 0.95, 1.0]
_UNKNOWN_TYPE_SHARE = 0.4

# Wards. The 44-ward names (2000-2018 boundaries, in force until 2018-11-30) and the 25-ward names
# (from 2018-12-01); rows use the published ``Name (NN)`` form.
# Before 2018-12 two neighbouring wards share each name (wards 1 and 2 are both Etobicoke North).
WARDS_44 = {
    number: name
    for pair, name in enumerate(
        [
            "Etobicoke North",
            "Etobicoke Centre",
            "Etobicoke-Lakeshore",
            "York West",
            "York Centre",
            "York South-Weston",
            "Parkdale-High Park",
            "Eglinton-Lawrence",
            "Davenport",
            "Trinity-Spadina",
            "St. Paul's",
            "Willowdale",
            "Don Valley West",
            "Toronto Centre-Rosedale",
            "Toronto-Danforth",
            "Beaches-East York",
            "Don Valley East",
            "Scarborough Southwest",
            "Scarborough Centre",
            "Scarborough-Agincourt",
            "Scarborough-Rouge River",
            "Scarborough East",
        ]
    )
    for number in (2 * pair + 1, 2 * pair + 2)
}
WARDS_25 = dict(
    enumerate(
        [
            "Etobicoke North",
            "Etobicoke Centre",
            "Etobicoke-Lakeshore",
            "Parkdale-High Park",
            "York South-Weston",
            "York Centre",
            "Humber River-Black Creek",
            "Eglinton-Lawrence",
            "Davenport",
            "Spadina-Fort York",
            "University-Rosedale",
            "Toronto-St. Paul's",
            "Toronto Centre",
            "Toronto-Danforth",
            "Don Valley West",
            "Don Valley East",
            "Don Valley North",
            "Willowdale",
            "Beaches-East York",
            "Scarborough Southwest",
            "Scarborough Centre",
            "Scarborough-Agincourt",
            "Scarborough North",
            "Scarborough-Guildwood",
            "Scarborough-Rouge Park",
        ],
        start=1,
    )
)
WARD_CHANGE = (2018, 12)  # rows created from this month use the 25-ward names
# Postal prefixes (FSAs) per 25-ward area: hand-built from Toronto's geography and every real
# (FSA, ward) pair in the sample and the kez-1a notebook.
_FSA_25 = {
    1: ("M9V", "M9W"),
    2: ("M9B", "M9C", "M9P", "M9R"),
    3: ("M8V", "M8W", "M8X", "M8Y", "M8Z", "M9A"),
    4: ("M6K", "M6P", "M6R", "M6S"),
    5: ("M6L", "M6M", "M6N", "M9N"),
    6: ("M3H", "M3J", "M3K", "M3M"),
    7: ("M3L", "M3N", "M9L", "M9M"),
    8: ("M5M", "M5N", "M6A", "M6B"),
    9: ("M6E", "M6G", "M6H"),
    10: ("M5J", "M5T", "M5V", "M6J"),
    11: ("M4T", "M4W", "M5R", "M5S"),
    12: ("M4S", "M4V", "M5P", "M6C"),
    13: ("M4X", "M4Y", "M5A", "M5B"),
    14: ("M4J", "M4K", "M4M"),
    15: ("M3B", "M4G", "M4N", "M4P"),
    16: ("M3A", "M3C", "M4A"),
    17: ("M2H", "M2J", "M2K"),
    18: ("M2M", "M2N", "M2R"),
    19: ("M4A", "M4B", "M4C", "M4E", "M4L"),
    20: ("M1K", "M1L", "M1M", "M1N"),
    21: ("M1H", "M1K", "M1P", "M1R"),
    22: ("M1S", "M1T", "M1W"),
    23: ("M1S", "M1V", "M1X"),
    24: ("M1E", "M1G", "M1H", "M1J"),
    25: ("M1B", "M1C", "M1E"),
}
_AREA_44 = {
    1: (1,),
    2: (1,),
    3: (2,),
    4: (2,),
    5: (3,),
    6: (3,),
    7: (7,),
    8: (7,),
    9: (6,),
    10: (6,),
    11: (5,),
    12: (5,),
    13: (4,),
    14: (4,),
    15: (8,),
    16: (8,),
    17: (9,),
    18: (9,),
    19: (10,),
    20: (10,),
    21: (12,),
    22: (12,),
    23: (18,),
    24: (18,),
    25: (15,),
    26: (15,),
    27: (13, 11),
    28: (13,),
    29: (14,),
    30: (14,),
    31: (19,),
    32: (19,),
    33: (16, 17),
    34: (16,),
    35: (20,),
    36: (20,),
    37: (21,),
    38: (21,),
    39: (22,),
    40: (22,),
    41: (23,),
    42: (23, 25),
    43: (24, 25),
    44: (25,),
}
# Streets for intersection rows: the real sample's streets plus Toronto arterials (names in the
# sample's abbreviation style). Not tied to the ward.
STREETS = (
    "Chaplin Cres",
    "Davisville Ave",
    "Don Mills Rd",
    "Sheppard Ave E",
    "High Park Blvd",
    "Parkside Dr",
    "Yonge St",
    "Bloor St W",
    "Bloor St E",
    "Queen St W",
    "Queen St E",
    "King St W",
    "King St E",
    "Dundas St W",
    "Dundas St E",
    "College St",
    "Spadina Ave",
    "Bathurst St",
    "Eglinton Ave W",
    "Eglinton Ave E",
    "Lawrence Ave W",
    "Lawrence Ave E",
    "Finch Ave W",
    "Finch Ave E",
    "Steeles Ave W",
    "Steeles Ave E",
    "Sheppard Ave W",
    "Kennedy Rd",
    "Markham Rd",
    "Victoria Park Ave",
    "Warden Ave",
    "Jane St",
    "Keele St",
    "Dufferin St",
    "Avenue Rd",
    "Bayview Ave",
    "Leslie St",
    "Danforth Ave",
    "Gerrard St E",
    "Kingston Rd",
    "Lake Shore Blvd W",
    "The Queensway",
    "Islington Ave",
    "Kipling Ave",
    "Royal York Rd",
    "Wilson Ave",
    "St Clair Ave W",
    "St Clair Ave E",
    "Mount Pleasant Rd",
    "Coxwell Ave",
    "Pape Ave",
    "Broadview Ave",
    "Ellesmere Rd",
    "McCowan Rd",
    "Midland Ave",
    "Birchmount Rd",
    "Brimley Rd",
    "Morningside Ave",
    "Weston Rd",
    "Parliament St",
    "Jarvis St",
    "University Ave",
    "Ossington Ave",
    "Roncesvalles Ave",
    "Jameson Ave",
    "Lansdowne Ave",
)
_NBSP = "\u00a0"  # latin-1 byte 0xA0: not valid UTF-8 on its own

QUIRK_KINDS = ("malformed", "latin1", "ward")
# With location_quirks: requests published without a location, Ward empty ("no_ward") or the postal
# prefix and intersection empty ("no_postal"). The contract marks Ward's nullability unknown and
# has not seen an empty prefix; independent emulators of the same files have both.
LOCATION_QUIRK_KINDS = ("no_ward", "no_postal")

_TIME_TABLE: list[str] = []


def _time_table() -> list[str]:
    if not _TIME_TABLE:
        _TIME_TABLE.extend(f"{h:02d}:{m:02d}:{s:02d}" for h in range(24) for m in range(60) for s in range(60))
    return _TIME_TABLE


def _h(*parts) -> int:
    """A stable 64-bit seed from any parts (independent of PYTHONHASHSEED)."""
    digest = hashlib.blake2b("\x1f".join(str(p) for p in parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def parse_month(month) -> tuple[int, int]:
    if not isinstance(month, str) or not re.fullmatch(r"\d{4}-(0[1-9]|1[0-2])", month):
        raise ValueError(f"month {month!r} is not in YYYY-MM form")
    return int(month[:4]), int(month[5:7])


def _spring_forward_day(year: int) -> int:
    """Day of March whose 02:00-03:00 does not exist in Toronto (second Sunday, since 2007)."""
    first = _dt.date(year, 3, 1)
    return (first + _dt.timedelta(days=(6 - first.weekday()) % 7 + 7)).day


def ward_label(name: str, number: int) -> str:
    return f"{name} ({number:02d})"


def is_valid_creation_date(value: str) -> bool:
    if not DATE_RE.match(value):
        return False
    try:
        _dt.datetime.strptime(value[:19], "%Y-%m-%d %H:%M:%S")
    except ValueError:
        return False
    return True


def ckan_timestamp(value: _dt.datetime) -> str:
    """CKAN's timestamp form: ISO 8601, microseconds, UTC without a zone."""
    return value.strftime("%Y-%m-%dT%H:%M:%S.%f")


def parse_ckan_timestamp(value: str) -> _dt.datetime:
    return _dt.datetime.strptime(value, "%Y-%m-%dT%H:%M:%S.%f")


def load_sample_rows(path: Path = SAMPLE_CSV) -> dict[int, list[list[str]]]:
    """The real rows by year, in file order (values exactly as published)."""
    by_year: dict[int, list[list[str]]] = {}
    with open(path, newline="", encoding=ENCODING) as fh:
        reader = csv.reader(fh)
        header = next(reader)
        if header != HEADER:
            raise ValueError(f"unexpected sample header {header}")
        for row in reader:
            by_year.setdefault(int(row[0][:4]), []).append(row)
    for rows in by_year.values():
        rows.sort(key=lambda r: r[0])
    return by_year


class _Sample(LoadedOnce):
    """The real rows by year (loaded once per process)."""

    def __init__(self) -> None:
        self.by_year = load_sample_rows()


class _Month:
    """One month's segment of a year file: the rendered bytes and what is in them."""

    __slots__ = ("data", "counts")

    def __init__(self, data: bytes, counts: dict) -> None:
        self.data = data
        self.counts = counts


# ---------------------------------------------------------------- the dataset


class Toronto311Dataset:
    """Deterministic yearly Toronto 311 CSV files, generated month by month and cached.

    ``csv_bytes(year)`` is the file ``SR<YYYY>.csv`` as published (latin-1 bytes, CRLF);
    ``zip_bytes(year)`` the zip holding it. ``rows_per_year`` sets the number of well-formed rows
    of every complete year (the real sample rows included); the default is the real volume.
    ``current_through`` (``YYYY-MM-DD``) is the last day in the current year's file; its year is
    the last year served. ``date_quirks`` (off by default: the contract does not report them) adds
    per year two rows dated the previous 31 December, one dated the next 1 January and two with
    impossible dates (``YYYY-02-30``, ``YYYY-MM-31`` of a 30-day month). ``location_quirks`` (off
    by default) empties the Ward of some rows (one in 8,000, at least 2 a year) and the postal
    prefix (with the intersection) of others (one in 3,000, at least 6 a year): requests without
    a location; :meth:`quirk_counts` reports them as ``empty_wards`` and ``empty_postal_prefixes``.
    """

    cache_budget = 512 * 1024 * 1024  # bytes of rendered months and files kept in memory

    def __init__(
        self,
        seed: int = DEFAULT_SEED,
        rows_per_year: int | None = None,
        current_through: str = DEFAULT_CURRENT_THROUGH,
        date_quirks: bool = False,
        location_quirks: bool = False,
    ) -> None:
        self.seed = int(seed)
        self.rows_per_year = self._check_rows(rows_per_year)
        self.current_through = self._check_day(current_through)
        self.date_quirks = bool(date_quirks)
        self.location_quirks = bool(location_quirks)
        self.package_name = PACKAGE_NAME
        self.package_id = PACKAGE_ID
        self.version = 0  # bumped on every change to any served byte
        self._initial = (self.rows_per_year, self.current_through, self.date_quirks, self.location_quirks)
        self._lock = threading.RLock()
        self._sample = _Sample.get()
        self._wards = self._ward_tables()
        self._reset_state()

    # ------------------------------------------------------------ configuration

    @staticmethod
    def _check_rows(rows_per_year):
        if rows_per_year is None:
            return None
        if isinstance(rows_per_year, bool) or int(rows_per_year) < 0:
            raise ValueError("rows_per_year must be an integer >= 0 or null")
        return int(rows_per_year)

    @staticmethod
    def _check_day(day: str) -> str:
        try:
            parsed = _dt.date.fromisoformat(day)
        except (TypeError, ValueError):
            raise ValueError(f"current_through {day!r} is not a YYYY-MM-DD date") from None
        last_year = horizon.last_year(DOCUMENTED_LAST_YEAR)
        if not (_dt.date(FIRST_YEAR, 1, 1) <= parsed <= _dt.date(last_year, 12, 31)):
            raise ValueError(f"current_through must be within {FIRST_YEAR}-01-01..{last_year}-12-31")
        return parsed.isoformat()

    def _reset_state(self) -> None:
        self._months: OrderedDict = OrderedDict()  # (year, key) -> _Month
        self._files: OrderedDict = OrderedDict()  # (year, kind) -> (rev, bytes, etag)
        self._sizes: dict = {}  # (year, kind) -> (rev, size)
        self._edits: dict[tuple[int, int], dict[int, str]] = {}  # (year, month) -> {gen index: status}
        self._edit_counts: dict[tuple[int, int], int] = {}
        self._bumps: dict[int, int] = {}  # year -> late-edit batches (each adds an hour to last_modified)
        self._rev: dict[int, int] = {}
        self._plans: dict[int, list] = {}

    def _invalidate(self, year: int | None = None) -> None:
        """Forget rendered bytes (of one year, or all); late edits are kept as an overlay."""
        if year is None:
            self._months.clear()
            self._files.clear()
            self._plans.clear()
            self._rev = {y: r + 1 for y, r in self._rev.items()}
        else:
            for key in [k for k in self._months if k[0] == year]:
                del self._months[key]
            for key in [k for k in self._files if k[0] == year]:
                del self._files[key]
            self._plans.pop(year, None)
            self._rev[year] = self._rev.get(year, 0) + 1
        self.version += 1

    def set_rows_per_year(self, rows_per_year: int | None) -> None:
        """Change the year size: regenerates every year (late edits are dropped)."""
        rows_per_year = self._check_rows(rows_per_year)
        with self._lock:
            self.rows_per_year = rows_per_year
            self._edits.clear()
            self._edit_counts.clear()
            self._bumps.clear()
            self._invalidate()

    def set_current_through(self, day: str) -> None:
        """Move the end of the current year's file. Months before the old end keep their bytes."""
        day = self._check_day(day)
        with self._lock:
            if day == self.current_through:
                return
            old_year, new_year = int(self.current_through[:4]), int(day[:4])
            self.current_through = day
            for year in {old_year, new_year}:
                self._invalidate(year)

    def set_date_quirks(self, enabled: bool) -> None:
        with self._lock:
            if bool(enabled) != self.date_quirks:
                self.date_quirks = bool(enabled)
                self._invalidate()

    def set_location_quirks(self, enabled: bool) -> None:
        with self._lock:
            if bool(enabled) != self.location_quirks:
                self.location_quirks = bool(enabled)
                self._invalidate()

    def reset(self) -> None:
        """Back to the constructor's configuration, without late edits."""
        with self._lock:
            self.rows_per_year, self.current_through, self.date_quirks, self.location_quirks = self._initial
            self._reset_state()
            self.version += 1

    # ------------------------------------------------------------ years, counts, watermarks

    @property
    def current_year(self) -> int:
        return int(self.current_through[:4])

    def years(self) -> list[int]:
        return list(range(FIRST_YEAR, self.current_year + 1))

    def _check_year(self, year) -> int:
        if isinstance(year, bool) or not isinstance(year, int):
            try:
                year = int(year)
            except (TypeError, ValueError):
                raise ValueError(f"year {year!r} is not an integer") from None
        if not (FIRST_YEAR <= year <= self.current_year):
            raise KeyError(f"no Toronto 311 file for {year} (served: {FIRST_YEAR}..{self.current_year})")
        return year

    def is_complete(self, year: int) -> bool:
        return year < self.current_year or self.current_through.endswith("-12-31")

    def year_count(self, year: int) -> int:
        """Well-formed rows in a complete year's file (real sample rows included)."""
        return self.rows_per_year if self.rows_per_year is not None else horizon.carried_forward(YEAR_ROWS, year)

    def month_allocation(self, year: int) -> list[int]:
        """Well-formed rows per month (sample rows included) for the full year, before the
        current year's cut-off. Sums exactly to :meth:`year_count`."""
        total = self.year_count(year)
        weights = []
        for m in range(1, 13):
            rng = random.Random(_h(self.seed, "month-level", year, m))
            weights.append(_MONTH_LEVEL[m - 1] * calendar.monthrange(year, m)[1] * rng.uniform(0.97, 1.03))
        scale = total / sum(weights)
        exact = [w * scale for w in weights]
        counts = [int(x) for x in exact]
        order = sorted(range(12), key=lambda i: (-(exact[i] - counts[i]), i))
        for i in order[: total - sum(counts)]:
            counts[i] += 1
        return counts

    def _base_modified(self, year: int) -> _dt.datetime:
        rng = random.Random(_h("last-modified", year))
        if year < self.current_year:
            day = _dt.datetime(year + 1, 1, 1) + _dt.timedelta(days=rng.randint(2, 11))
            return day + _dt.timedelta(
                hours=rng.randint(9, 17),
                minutes=rng.randrange(60),
                seconds=rng.randrange(60),
                microseconds=rng.randrange(1_000_000),
            )
        cut = _dt.date.fromisoformat(self.current_through) + _dt.timedelta(days=1)
        return _dt.datetime(
            cut.year, cut.month, cut.day, 6, rng.randrange(60), rng.randrange(60), rng.randrange(1_000_000)
        )

    def last_modified_dt(self, year: int) -> _dt.datetime:
        year = self._check_year(year)
        with self._lock:
            return self._base_modified(year) + _dt.timedelta(hours=self._bumps.get(year, 0))

    def last_modified(self, year: int) -> str:
        """The resource's ``last_modified`` as CKAN shows it (``YYYY-MM-DDTHH:MM:SS.ffffff``, UTC)."""
        return ckan_timestamp(self.last_modified_dt(year))

    def created(self, year: int) -> str:
        """The resource's ``created``: the first publication (past years: the final file)."""
        year = self._check_year(year)
        if year < self.current_year:
            return ckan_timestamp(self._base_modified(year))
        rng = random.Random(_h("created", year))
        first = _dt.datetime(year, 1, 8, 7, rng.randrange(60), rng.randrange(60), rng.randrange(1_000_000))
        return ckan_timestamp(first)

    def revision(self, year: int) -> tuple:
        """Changes whenever the year's bytes may have changed (caches key on it)."""
        with self._lock:
            return (
                self._rev.get(year, 0),
                self.rows_per_year,
                self.current_through,
                self.date_quirks,
                self.location_quirks,
                self._bumps.get(year, 0),
            )

    # ------------------------------------------------------------ files

    def month_keys(self, year: int) -> list[str]:
        """Segments of the file in order: ``pre`` (previous-year dates, with date_quirks), the
        months ``YYYY-MM`` up to the cut-off, ``post`` (next-year dates, complete years only)."""
        year = self._check_year(year)
        last = 12 if year < self.current_year else int(self.current_through[5:7])
        keys = [f"{year:04d}-{m:02d}" for m in range(1, last + 1)]
        if self.date_quirks:
            keys = ["pre"] + keys + (["post"] if self.is_complete(year) else [])
        return keys

    def month_bytes(self, year: int, month: str) -> bytes:
        """One segment's bytes (``YYYY-MM``, ``pre`` or ``post``), without the header."""
        year = self._check_year(year)
        with self._lock:
            if month not in self.month_keys(year):
                raise KeyError(f"no segment {month!r} in the {year} file")
            return self._segment(year, month).data

    def _cached_file(self, year: int, kind: str, build) -> bytes:
        """The year's ``kind`` file from the cache while the year's revision holds, else ``build()``
        (stored under that revision)."""
        with self._lock:
            entry = self._files.get((year, kind))
            rev = self.revision(year)
            if entry is not None and entry[0] == rev:
                self._files.move_to_end((year, kind))
                return entry[1]
            data = build()
            self._store_file(year, kind, rev, data)
            return data

    def csv_bytes(self, year: int) -> bytes:
        """``SR<YYYY>.csv`` exactly as served: header + rows, latin-1, CRLF line ends."""
        year = self._check_year(year)
        return self._cached_file(
            year, "csv", lambda: HEADER_LINE + b"".join(self._segment(year, key).data for key in self.month_keys(year))
        )

    def zip_bytes(self, year: int) -> bytes:
        """The yearly zip: one member ``SR<YYYY>.csv`` (upper case) holding :meth:`csv_bytes`."""
        year = self._check_year(year)
        return self._cached_file(
            year, "zip", lambda: build_zip(f"SR{year}.csv", self.csv_bytes(year), self.last_modified_dt(year))
        )

    def file(self, year: int, kind: str) -> tuple[bytes, str]:
        """``(bytes, etag)`` of the ``csv`` or ``zip`` file; the ETag is the content's MD5."""
        data = self.csv_bytes(year) if kind == "csv" else self.zip_bytes(year)
        with self._lock:
            entry = self._files.get((year, kind))
            if entry is not None and entry[1] is data:
                return data, entry[2]
            return data, etag_for(data)

    def known_size(self, year: int, kind: str) -> int | None:
        """The file's size if it has been built for the current revision, else None."""
        with self._lock:
            entry = self._sizes.get((year, kind))
            return entry[1] if entry is not None and entry[0] == self.revision(year) else None

    def _store_file(self, year: int, kind: str, rev, data: bytes) -> None:
        self._files[(year, kind)] = (rev, data, etag_for(data))
        self._files.move_to_end((year, kind))
        self._sizes[(year, kind)] = (rev, len(data))
        self._evict()

    def _evict(self) -> None:
        def used() -> int:
            return sum(len(e[1]) for e in self._files.values()) + sum(len(m.data) for m in self._months.values())

        while len(self._files) > 1 and used() > self.cache_budget:
            self._files.popitem(last=False)
        while len(self._months) > 12 and used() > self.cache_budget:
            self._months.popitem(last=False)

    # ------------------------------------------------------------ parsed views (tests)

    def rows(self, year: int) -> list[dict]:
        """The file's rows as a CSV reader sees them (latin-1), header names as keys. Lines with
        more fields than the header are left out (see :meth:`bad_lines`)."""
        text = self.csv_bytes(year).decode(ENCODING)
        reader = csv.reader(io.StringIO(text, newline=""))
        next(reader)
        return [dict(zip(HEADER, row)) for row in reader if len(row) == len(HEADER)]

    def bad_lines(self, year: int) -> list[str]:
        """The lines with more fields than the header (decoded, without the CRLF)."""
        text = self.csv_bytes(year).decode(ENCODING)
        return [line for line in text.split("\r\n")[1:] if line and len(next(csv.reader([line]))) != len(HEADER)]

    def rows_for_month(self, month: str) -> list[dict]:
        """Rows of the month's year file whose Creation Date is a valid time in that month."""
        year, _m = parse_month(month)
        return [
            r
            for r in self.rows(year)
            if r["Creation Date"].startswith(month) and is_valid_creation_date(r["Creation Date"])
        ]

    def quirk_counts(self, year: int) -> dict:
        """What the year's file holds (generates it if needed):

        ``data_lines`` (all lines after the header) = ``rows`` (9 fields) + ``malformed_lines``
        (more fields than the header); among the rows: ``sample_rows`` (real), ``latin1_rows``
        (a 0xA0 byte in Intersection Street 1), ``non_pattern_wards`` (Ward not ``Name (NN)``),
        ``intersection_rows``, ``street2_empty``, ``unknown_status``, ``unknown_type``,
        ``out_of_year_dates`` and ``unparseable_dates`` (date_quirks only). ``quarantine`` =
        malformed + out-of-year + unparseable: the lines a strict loader of this year sets aside.
        """
        year = self._check_year(year)
        with self._lock:
            total: dict = {}
            for key in self.month_keys(year):
                for name, value in self._segment(year, key).counts.items():
                    total[name] = total.get(name, 0) + value
        for name in _COUNT_NAMES:
            total.setdefault(name, 0)
        total["data_lines"] = total["rows"] + total["malformed_lines"]
        total["quarantine"] = total["malformed_lines"] + total["out_of_year_dates"] + total["unparseable_dates"]
        return total

    # ------------------------------------------------------------ late edits

    def apply_late_edits(self, year: int, month, n: int) -> list[dict]:
        """Change the Status of ``n`` generated rows created in ``month`` (``YYYY-MM`` or 1-12) of
        ``year``'s file, in place; bump the year's ``last_modified`` by an hour. Other months'
        bytes do not change. Deterministic per (seed, year, month, number of earlier edits).
        Returns ``[{"creation_date", "old_status", "new_status"}]`` in file order."""
        year = self._check_year(year)
        if isinstance(month, int) and not isinstance(month, bool):
            if not 1 <= month <= 12:
                raise ValueError("month must be 1..12 or YYYY-MM")
            month = f"{year:04d}-{month:02d}"
        my, mm = parse_month(month)
        if my != year:
            raise ValueError(f"month {month} is not in the {year} file")
        n = edit_count(n)
        with self._lock:
            if month not in self.month_keys(year):
                raise ValueError(f"month {month} is after the current file's end ({self.current_through})")
            gen = self._generated_rows(year, mm)
            cutoff = self._cutoff(year)
            visible = [i for i, fields in enumerate(gen) if cutoff is None or fields[0] <= cutoff]
            n = min(n, len(visible))
            count = self._edit_counts.get((year, mm), 0)
            self._edit_counts[(year, mm)] = count + 1
            rng = random.Random(_h(self.seed, "edit", year, mm, count))
            chosen = sorted(rng.sample(visible, n))
            overlay = self._edits.setdefault((year, mm), {})
            statuses = OLD_STATUSES if year < _NEW_ERA else NEW_STATUSES
            edited = []
            for i in chosen:
                old = overlay.get(i, gen[i][1])
                new = rng.choice([s for s in statuses if s != old])
                overlay[i] = new
                edited.append({"creation_date": gen[i][0], "old_status": old, "new_status": new})
            self._bumps[year] = self._bumps.get(year, 0) + 1
            # only this month's segment is re-rendered; the file and zip are rebuilt from segments
            self._months.pop((year, month), None)
            for key in [k for k in self._files if k[0] == year]:
                del self._files[key]
            self._rev[year] = self._rev.get(year, 0) + 1
            self.version += 1
            return edited

    def late_edits(self) -> dict:
        """Current status overrides: ``{"YYYY-MM": number of rows changed}``."""
        with self._lock:
            return {f"{y:04d}-{m:02d}": len(v) for (y, m), v in sorted(self._edits.items())}

    # ------------------------------------------------------------ generation

    def _ward_tables(self) -> dict:
        """Per ward system: ([(label, bare name, fsas)], cumulative weights) with seeded weights."""
        tables = {}
        rng = random.Random(_h(self.seed, "wards"))
        for system, names in ((44, WARDS_44), (25, WARDS_25)):
            entries, cum, acc = [], [], 0.0
            for number, name in names.items():
                areas = (number,) if system == 25 else _AREA_44[number]
                fsas = tuple(sorted({f for a in areas for f in _FSA_25[a]}))
                entries.append((ward_label(name, number), name, fsas))
                acc += rng.uniform(0.7, 1.3) * (44 / len(names))
                cum.append(acc)
            tables[system] = (entries, cum)
        return tables

    def _vocab(self, year: int, month: int) -> tuple[list, list]:
        vocab, cum, acc = [], [], 0.0
        for name, division, section, weight, first, last, season in SERVICE_TYPES:
            # a type still in use in the last documented year stays in use after it
            if not first <= year <= (last if last < DOCUMENTED_LAST_YEAR else year):
                continue
            factor = _SEASON_FACTOR[season][month - 1] if season else 1.0
            acc += weight * factor
            vocab.append((name, division, section))
            cum.append(acc)
        return vocab, cum

    def _cutoff(self, year: int) -> str | None:
        if year < self.current_year:
            return None
        return f"{self.current_through} 23:59:59.9999999"

    def _plan(self, year: int) -> list[tuple[str, int, float, int]]:
        """The year's quirks: ``(kind, month, position 0..1, variant)``; independent of the
        current year's cut-off, so a growing file keeps its earlier months' bytes."""
        plan = self._plans.get(year)
        if plan is None:
            total = self.year_count(year)
            rng = random.Random(_h(self.seed, "quirks", year, total))
            sizes = {
                "malformed": max(2, round(total / 25000)),
                "latin1": max(2, round(total / 40000)),
                "ward": max(2, round(total / 50000)),
            }
            plan = []
            for kind in QUIRK_KINDS:
                for k in range(sizes[kind]):
                    plan.append((kind, rng.randint(1, 12), rng.random(), k))
            if self.location_quirks:  # drawn after the others, so those keep their places
                sizes = {"no_ward": max(2, round(total / 8000)), "no_postal": max(6, round(total / 3000))}
                for kind in LOCATION_QUIRK_KINDS:
                    for k in range(sizes[kind]):
                        plan.append((kind, rng.randint(1, 12), rng.random(), k))
            self._plans[year] = plan
        return plan

    def _generated_rows(self, year: int, month: int) -> list[list[str]]:
        """The month's generated rows (before quirks, edits, sample rows and the cut-off)."""
        alloc = self.month_allocation(year)[month - 1]
        sample = self._sample.by_year.get(year, []) if month == 1 else []
        n = max(0, alloc - len(sample))
        floor = -1
        if sample:
            last = _dt.datetime.strptime(sample[-1][0][:19], "%Y-%m-%d %H:%M:%S")
            floor = (last.day - 1) * 86400 + last.hour * 3600 + last.minute * 60 + last.second
        rng = random.Random(_h(self.seed, "rows", year, month))
        days = calendar.monthrange(year, month)[1]
        gap_day = _spring_forward_day(year) - 1 if month == 3 else -1
        hours = rng.choices(_HOURS, cum_weights=_HOUR_CUM, k=n)
        random_ = rng.random
        times = []
        for hour in hours:
            t = int(random_() * days) * 86400 + hour * 3600 + int(random_() * 3600)
            while t <= floor:
                t = int(random_() * days) * 86400 + hour * 3600 + int(random_() * 3600)
            if t // 86400 == gap_day and 7200 <= t % 86400 < 10800:
                t += 3600
            times.append(t)
        times.sort()

        vocab, cum = self._vocab(year, month)
        types = rng.choices(vocab, cum_weights=cum, k=n)
        if year < _NEW_ERA:
            statuses = rng.choices(OLD_STATUSES, cum_weights=_OLD_STATUS_CUM, k=n)
        else:
            statuses = rng.choices(NEW_STATUSES, cum_weights=_NEW_STATUS_CUM.get(year, _NEW_STATUS_CUM_DEFAULT), k=n)
        system = 25 if (year, month) >= WARD_CHANGE else 44
        ward_entries, ward_cum = self._wards[system]
        wards = rng.choices(ward_entries, cum_weights=ward_cum, k=n)
        p_int = _intersection_share(year)
        p_s2 = _STREET2_EMPTY["new" if year >= _NEW_ERA else "old"]
        unknown_type = year == 2024
        prefixes = [f"{year:04d}-{month:02d}-{d:02d} " for d in range(1, days + 1)]
        table = _time_table()
        n_streets = len(STREETS)
        rows = []
        for i in range(n):
            t = times[i]
            status = statuses[i]
            kind = types[i]
            if unknown_type and status == "Unknown" and random_() < _UNKNOWN_TYPE_SHARE:
                kind = UNKNOWN_TYPE
            ward = wards[i]
            date = prefixes[t // 86400] + table[t % 86400] + ".0000000"
            if random_() < p_int:
                s1 = STREETS[int(random_() * n_streets)]
                s2 = STREETS[int(random_() * n_streets)]
                while s2 == s1:
                    s2 = STREETS[int(random_() * n_streets)]
                if random_() < p_s2:
                    s2 = ""
                rows.append([date, status, "Intersection", s1, s2, ward[0], kind[0], kind[1], kind[2]])
            else:
                fsas = ward[2]
                rows.append(
                    [date, status, fsas[int(random_() * len(fsas))], "", "", ward[0], kind[0], kind[1], kind[2]]
                )
        return rows

    def _quirk_row(self, rng: random.Random, year: int, month: int, date: str) -> list[str]:
        """A single generated row for the date quirks (a separate random stream)."""
        vocab, cum = self._vocab(year, month)
        kind = rng.choices(vocab, cum_weights=cum)[0]
        statuses = OLD_STATUSES if year < _NEW_ERA else NEW_STATUSES
        system = 25 if (year, month) >= WARD_CHANGE else 44
        entries, ward_cum = self._wards[system]
        ward = rng.choices(entries, cum_weights=ward_cum)[0]
        return [date, statuses[0], rng.choice(ward[2]), "", "", ward[0], kind[0], kind[1], kind[2]]

    def _segment(self, year: int, key: str) -> _Month:
        cached = self._months.get((year, key))
        if cached is not None:
            self._months.move_to_end((year, key))
            return cached
        records = self._build_segment(year, key)
        counts = dict.fromkeys(_COUNT_NAMES, 0)
        for kind, fields in records:
            if kind == "malformed":
                counts["malformed_lines"] += 1
                continue
            counts["rows"] += 1
            if kind == "sample":
                counts["sample_rows"] += 1
            elif kind == "out_of_year":
                counts["out_of_year_dates"] += 1
            elif kind == "bad_date":
                counts["unparseable_dates"] += 1
            if fields[2] == "Intersection":
                counts["intersection_rows"] += 1
                if not fields[4]:
                    counts["street2_empty"] += 1
            if _NBSP in fields[3]:
                counts["latin1_rows"] += 1
            if not fields[5]:
                counts["empty_wards"] += 1
            elif not fields[5].endswith(")"):
                counts["non_pattern_wards"] += 1
            if not fields[2]:
                counts["empty_postal_prefixes"] += 1
            if fields[1] == "Unknown":
                counts["unknown_status"] += 1
            if fields[6] == UNKNOWN_TYPE[0]:
                counts["unknown_type"] += 1
        text = "".join(",".join(fields) + "\r\n" for _kind, fields in records)
        segment = _Month(text.encode(ENCODING), counts)
        self._months[(year, key)] = segment
        self._evict()
        return segment

    def _build_segment(self, year: int, key: str) -> list[tuple[str, list[str]]]:
        """``[(kind, fields)]`` in file order; kind is sample, row, malformed, out_of_year or bad_date."""
        if key in ("pre", "post"):
            rng = random.Random(_h(self.seed, "date-quirks", year, key))
            if key == "pre":
                minutes = sorted(rng.sample(range(50, 60), 2))
                return [
                    (
                        "out_of_year",
                        self._quirk_row(
                            rng, year, 1, f"{year - 1:04d}-12-31 23:{m:02d}:{rng.randrange(60):02d}.0000000"
                        ),
                    )
                    for m in minutes
                ]
            return [
                (
                    "out_of_year",
                    self._quirk_row(
                        rng, year, 1, f"{year + 1:04d}-01-01 00:0{rng.randrange(10)}:{rng.randrange(60):02d}.0000000"
                    ),
                )
            ]
        _y, month = parse_month(key)
        gen = self._generated_rows(year, month)
        extra_after: dict[int, list[list[str]]] = {}
        used: set[int] = set()
        for kind, qmonth, position, variant in self._plan(year):
            if qmonth != month or not gen:
                continue
            i = min(len(gen) - 1, int(position * len(gen)))
            if kind == "malformed":
                row = list(gen[i])
                row[6], row[7], row[8] = MALFORMED_TYPE
                extra_after.setdefault(i, []).append(row)
                continue
            while i in used and i + 1 < len(gen):
                i += 1
            if i in used:
                continue
            used.add(i)
            row = list(gen[i])
            if kind == "latin1":
                rng = random.Random(_h(self.seed, "latin1", year, month, variant))
                street = rng.choice([s for s in STREETS if " " in s])
                other = rng.choice([s for s in STREETS if s != street])
                row[2], row[3], row[4] = "Intersection", street.replace(" ", _NBSP, 1), other
            elif kind == "no_ward":
                row[5] = ""
            elif kind == "no_postal":
                row[2], row[3], row[4] = "", "", ""
            else:  # a Ward value that is not "Name (NN)": the bare name, or Unknown
                name = row[5].rsplit(" (", 1)[0]
                row[5] = name if variant % 2 == 0 else "Unknown"
            gen[i] = row
        # late edits last: a malformed copy keeps the status the row was published with
        for i, status in self._edits.get((year, month), {}).items():
            gen[i] = list(gen[i])
            gen[i][1] = status
        records: list[tuple[str, list[str]]] = [
            ("sample", list(r)) for r in (self._sample.by_year.get(year, []) if month == 1 else [])
        ]
        for i, fields in enumerate(gen):
            records.append(("row", fields))
            for extra in extra_after.get(i, ()):
                records.append(("malformed", extra))
        if self.date_quirks:
            rng = random.Random(_h(self.seed, "bad-dates", year))
            thirty = rng.choice((4, 6, 9, 11))
            for bad_month, day in ((2, 30), (thirty, 31)):
                if bad_month == month:
                    date = (
                        f"{year:04d}-{month:02d}-{day} {rng.randrange(8, 18):02d}:{rng.randrange(60):02d}:"
                        f"{rng.randrange(60):02d}.0000000"
                    )
                    records.append(("bad_date", self._quirk_row(rng, year, month, date)))
                else:
                    rng.random()
        cutoff = self._cutoff(year)
        if cutoff is not None:
            records = [(kind, f) for kind, f in records if f[0] <= cutoff]
        return records


_COUNT_NAMES = (
    "rows",
    "malformed_lines",
    "sample_rows",
    "latin1_rows",
    "non_pattern_wards",
    "intersection_rows",
    "street2_empty",
    "unknown_status",
    "unknown_type",
    "out_of_year_dates",
    "unparseable_dates",
    "empty_wards",
    "empty_postal_prefixes",
)
