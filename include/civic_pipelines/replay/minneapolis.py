"""Minneapolis 311 service requests (ArcGIS Online hosted layers ``Public_311_<YEAR>``) for the
replay server.

Owns the *data*: deterministic, generated service requests month by month in the ArcGIS JSON
wire form (the ``attributes`` of a feature, dates as integer epoch milliseconds UTC), one layer per
calendar year, the layers' ``editingInfo`` watermarks and late edits. It knows nothing about HTTP;
the ArcGIS REST endpoints live in ``arcgis.py``.

What is real and what is generated (see ``data/README.md``): no real Minneapolis 311 rows exist
publicly, so every row is generated. The field names and types follow the contract
(``shared/contracts/minneapolis_311.md``); the category vocabulary (SUBJECTNAME / REASONNAME /
TYPENAME / TITLE) is the real one, from mikecolemn/mpls-311-data
``dbt/mpls_311_incremental/seeds/mpls_311_categories.csv`` @3c0a5f75 (``title`` equals
``type_name`` in every row of that seed). Volumes, seasonality, close lags and locations are
plausible inventions (no per-layer counts are public).

Months are UTC: a row belongs to the month of its ``OPENEDDATETIME`` in UTC. Which year's layer
files it is the publisher's rule, configurable with ``layer_time_zone``: ``UTC`` (the default) files
a row in the layer of its UTC year, so a client's ``DATE 'YYYY-MM-01 00:00:00'`` month window over
that one layer returns exactly :meth:`Minneapolis311Dataset.rows_for_month`; a zone such as
``America/Chicago`` files it by its local year, so the first hours of 1 January UTC (the evening
of 31 December in Minneapolis) sit in the previous year's layer, and with a zone east of UTC the
last hours of 31 December UTC sit in the next year's layer. OBJECTIDs do not depend on the rule.
"""

from __future__ import annotations

import calendar
import datetime as _dt
import math
import random
import re
import threading
from bisect import bisect_left
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from civic_pipelines.replay import horizon
from civic_pipelines.replay.dataset_support import MonthlyRows, edit_count
from civic_pipelines.replay.seeds import seed_for

NAME = "minneapolis_311"
FIRST_YEAR = 2015  # Public_311_2015 .. Public_311_2026 (contract; a new layer every January)
# The last layer the contract documents. The publisher opens a new layer every January, so by default
# the replay serves layers through today's year (horizon.py): Public_311_2027 appears in 2027.
DOCUMENTED_LAST_YEAR = 2026
DEFAULT_SEED = 20240101
# 2026-01-01T00:00:00Z, epoch ms (the data's "as of"). It stays fixed so the documented years' rows
# never change with the clock; a layer opened after it starts with its own creation instant as its
# lastEditDate (see layer_last_edit_date), since a layer cannot be edited before it exists.
DEFAULT_LAST_EDIT_DATE = 1_767_225_600_000
DATE_FIELD = "OPENEDDATETIME"  # the open/creation date: partitions rows into months and layers
OBJECTID_FIELD = "OBJECTID"
MAX_ROWS_PER_MONTH = 80_000  # the modelled months stay below this
# A configured month may be larger (benchmarks need months of 500,000+ rows); the OBJECTID stride
# then widens so a year's ids still fit within it (and within int32, as an OID field is).
MAX_CONFIGURED_ROWS_PER_MONTH = 800_000
_OBJECTID_YEAR_STRIDE = 1_000_000  # OBJECTIDs of year Y: (Y - 2000) * 1,000,000 + 1, +2, ...
_LARGE_OBJECTID_YEAR_STRIDE = 10_000_000  # the same with rows_per_month above MAX_ROWS_PER_MONTH
_CASEID_YEAR_STRIDE = 100_000_000  # CASEIDs of year Y: Y * 100,000,000 + a rising sequence

# (name, ArcGIS type, length) in the contract's order. CASEID is an int64 in the contract (values
# above 2**31), which a classic hosted layer stores as esriFieldTypeDouble; it is served as an
# integer JSON number. IsAccessibilityRelated is uncertain in the contract (one 2026 fixture).
FIELDS: list[tuple[str, str, int | None]] = [
    ("OBJECTID", "esriFieldTypeOID", None),
    ("CASEID", "esriFieldTypeDouble", None),
    ("SUBJECTNAME", "esriFieldTypeString", 256),
    ("REASONNAME", "esriFieldTypeString", 256),
    ("TYPENAME", "esriFieldTypeString", 256),
    ("TITLE", "esriFieldTypeString", 256),
    ("OPENEDDATETIME", "esriFieldTypeDate", 8),
    ("CASESTATUS", "esriFieldTypeInteger", None),
    ("CLOSEDDATETIME", "esriFieldTypeDate", 8),
    ("XCOORD", "esriFieldTypeDouble", None),
    ("YCOORD", "esriFieldTypeDouble", None),
    ("LastUpdateDate", "esriFieldTypeDate", 8),
    ("IsAccessibilityRelated", "esriFieldTypeString", 256),
]
FIELD_NAMES = [f for f, _t, _l in FIELDS]
CASE_OPEN, CASE_CLOSED = 1, 0  # dbt docs: 0 = closed, 1 = open (uncertain in the contract)

# The real vocabulary: subject -> reason -> type names (mpls_311_categories.csv @3c0a5f75).
CATEGORY_TREE: dict[str, dict[str, list[str]]] = {
    "Animal Related": {
        "Animal Control": [
            "Animal Complaint - Livability",
            "Animal Complaint - Public Health",
            "Deceased Animal Pick Up",
        ]
    },
    "City Administration": {
        "City Attorney": ["City Attorney Callback Request"],
        "City Clerk": ["Elections Callback Request", "Elections Complaint"],
        "Civil Rights": ["Human Rights Complaint", "Sick and Safe Time Inquiry"],
        "GIS": ["GIS Service Requests"],
        "Risk Management and Claims": ["Risk Mgmt Callback Request", "Risk Mgmt Claim form Request"],
    },
    "Community Services": {"NCR": ["ADA Title II Coord Callback"]},
    "Health / Environmental": {
        "Unhealthy Conditions": [
            "Air Pollution Complaint",
            "Commercial Food Safety/Sanitation Complaint",
            "Emergency Pollution Complaint",
            "Env Mgmt Callback Request",
            "Food Safety Callback",
            "Hoarding",
            "Land Pollution Complaint",
            "Lead Inquiry",
            "Noise Pollution Complaint",
            "Pollution Control Annual Registration - PCAR",
            "Syringe Litter Concern Pilot Project",
            "Urgent Pollution Complaint",
            "Water Pollution Complaint",
        ]
    },
    "Permits / Licensing": {
        "Commercial / Business Licensing": [
            "Business License Application Request",
            "Business License Callback Request",
            "False Burglar Alarm",
            "Licensing Complaint",
            "Permanent Liquor License Application Request",
            "Permanent Liquor License Callback Request",
            "Smoking Ban Violation Complaint",
            "Temporary Liquor License Callback Request",
        ]
    },
    "Property": {
        "Assessor": ["Assessor Callback Request", "Homestead Fraud Report", "Homestead Removal Request"],
        "Commercial Property": [
            "Commercial Structure Unsound",
            "Commercial/Mixed Conditions Complaint",
            "FIRE Commercial Exterior Nuisance",
        ],
        "Construction Inspections": [
            "Certificate of Code Compliance Request",
            "Certificate of Occupancy Request",
            "Permitted Work",
            "Unpermitted Work",
            "Unpermitted Work - Self Service",
        ],
        "CPED Property Management": ["Property Management Complaint"],
        "Development Review": [
            "CCS Supervisor Callback",
            "CCS Supervisor Complaint",
            "Construction Plan Request",
            "Copy of Permit",
            "Development Coordinator",
            "Permit Addition Refund",
            "Permit Fee Inquiry",
            "Permit Issuance",
            "Permit Problem",
            "Permit Question Callback",
            "Permit Status Request",
            "Plan Review Callback",
            "Records Management Specialist",
            "Regulated Backflow Assembly",
        ],
        "Elevator": ["Elevator Inquiry"],
        "Private Property": [
            "Exterior Nuisance - Self Service",
            "Exterior Nuisance Complaint",
            "Frenz Property Settlement",
            "Homeless Encampment",
            "Housing Order Inquiry",
            "PPU Callback",
            "Regulatory Service Special Assessment",
            "Rental License Complaint",
            "Rental License Followup",
            "Rental License Tier Inquiry",
            "Rental License Tier Review Request",
            "Residential Conditions Complaint",
            "Residential Conditions Complaint HOD",
            "Residential Conditions Complaint HOD Tenant",
            "Residential Conditions Complaint Tenant",
            "RHOD Conditions Complaint",
            "RHOD Exterior Nuisance Complaint",
            "RHOD Tenant Conditions Complaint",
            "Snow - Illegal Dumping Residential",
            "Vacant Building / Open to Trespass",
            "Vacant Building / Open to Trespass Boarded",
        ],
        "Railroad": ["Railroad Complaint"],
        "Truth in Sale of Housing": [
            "Acknowledgement of Responsibility Request",
            "Full TISH Report Request",
            "Repair Checklist Request",
            "TISH Callback",
        ],
        "Zoning": [
            "Campaign Sign Complaint",
            "Mural/Sign Callback Request",
            "Request Application - Land Use / Zoning Change",
            "Request Application - Rebuild / Flood Plain Letter",
            "Request Callback - Flood Plain Designation",
            "Request Callback - Setback/Height Requirements",
            "Request Callback - Zoning Classification",
            "Request Meeting with a Planner",
            "Sign Complaint",
            "Zoning Ordinance Complaint",
        ],
    },
    "Public Safety": {
        "Fire": ["Fire Hydrant Snow Issue", "Fire Report Records Request", "Fire Rig Visit Request"],
        "Fire Prevention": ["Fire Prevention Callback"],
        "Graffiti / Clean City": ["Graffiti - Open311", "Graffiti complaint / reporting"],
        "Police": [
            "Fireworks Complaint",
            "K9 Appearance Request",
            "Police Mounted Patrol Request",
            "Suspicious Activity",
        ],
    },
    "Sidewalks": {
        "Complaints": [
            "Sidewalk Obstruction Complaint",
            "Sidewalk Structural - Open311",
            "Sidewalk Structural Complaint",
        ],
        "Inspection": ["Repair Notice Question", "Request Call from Sidewalk Inspector"],
        "Snow & Ice": [
            "Sidewalk Snow & Ice Complaint",
            "Sidewalk Snow & Sand Letter Question",
            "Sidewalk Snow and Ice - SS",
            "Sidewalk Snow and Ice - SS City",
            "Sidewalk Snow Ice - Open311",
            "Sidewalk Snow Removal Resources",
        ],
    },
    "Solid Waste & Recycling": {
        "Garbage & Recycling": [
            "Illegal Dumping Complaint",
            "Solid Waste General Issues",
            "Solid Waste Overflow Litter",
            "Solid Waste Overflowing Litter - Open311",
        ]
    },
    "Streets": {
        "Bridges": ["Bridge Complaint"],
        "Green Spaces - Public": ["Grass & Weed Complaint"],
        "Lighting": [
            "Street Light - New",
            "Street Light Outage",
            "Street Light Outage - Open311",
            "Street Light Trouble",
            "Street Light Trouble - Open311",
            "Street Light Wreck - Open311",
            "Street Light Wreck/Damage",
            "Xcel Street Light Trouble",
        ],
        "Snow & Ice": ["Sand Barrel", "Snow & Ice Complaint", "Streets Snow & Ice - Open311"],
        "Street Cleaning / Sweeping": ["Special Sweep"],
        "Street Maintenance": [
            "Barricade Pickup / Placement",
            "Chemical Spill",
            "Debris in the Street or Alley",
            "Fence or Guardrail Maintenance",
            "General Street Complaint",
            "Pothole",
            "Pothole - Open311",
            "Sport Equip in Street",
            "Trees Down",
        ],
        "Traffic": [
            "Traffic - General Issue",
            "Traffic Sign - New",
            "Traffic Sign - Removal",
            "Traffic Sign - Repair",
            "Traffic Sign Repair - Open311",
            "Traffic Signal - New/Modification",
            "Traffic Signal Timing - Open311",
            "Traffic Signal Timing Issue",
            "Traffic Signal Trouble",
            "Traffic Signal Trouble - Open311",
        ],
    },
    "Utilities Related": {
        "Sewer & Storm Drain": ["Sewer Callback", "Sewer Issues"],
        "Utility Billing": [
            "Change Request - Mailing Address or Name",
            "Duplicate Water Bill Request",
            "E-bill Registration Request",
            "Meter Reading / Service Appointment",
            "Start Utility Service - Move In / Buy Property",
            "Stop & Start Utility Service - Move Out / In",
            "Stop Utility Service - Move Out / Sell Property",
            "Utility Billing General Inquiry",
            "Water Service Turn Off",
            "Water Service Turn On",
        ],
        "Utility Connections": ["Utility Connection Permit Inquiry", "Utility Cut Inquiry"],
        "Water": ["Hydrant Issue", "Water Main Break", "Water Quality Issues", "Water Service Issue"],
    },
    "Vehicles and Commuting": {
        "Biking": [
            "Abandoned/Illegally Parked Bicycle",
            "Bicycle Lane Issue",
            "Bicycle Trail Improvement Request",
            "Bike Lane Issue - Open311",
            "Bike Rules Education Inquiry",
            "Bike Trail Safety Phone",
            "Bike Trail Safety Phone - Open 311",
        ],
        "Parking": [
            "Commercial Disability Zone",
            "Neighborhood Parking Information",
            "Parking Meter - Open311",
            "Parking Meter Problem",
            "Parking Ramp/Lot Issue",
            "Residential Disability Zone",
        ],
        "Pedestrian": ["Pedestrian Complaint"],
        "Shared Mobility": ["Shared Mobility Issue", "Shared Mobility Issue - Open311"],
        "Traffic Control": [
            "Abandoned Vehicle",
            "Abandoned Vehicle - Open311",
            "Dumpster and Storage Container Complaint",
            "Inoperable Vehicle Complaint",
            "Parking Violation - Open311",
            "Parking Violation Complaint",
            "Snow - Illegal Dumping",
            "Traffic Congestion Issue",
            "Traffic Control Officer Complaint",
        ],
        "Traffic Safety": ["Speed Hump Request", "Speed Wagon"],
    },
}
# (subject, reason, type, title); title == type in every row of the seed.
CATEGORIES: list[tuple[str, str, str, str]] = [
    (subject, reason, type_name, type_name)
    for subject, reasons in CATEGORY_TREE.items()
    for reason, types in reasons.items()
    for type_name in types
]

# Relative frequency of each request type (an invention: the seed has no counts). Types not
# listed weigh _DEFAULT_WEIGHT.
_DEFAULT_WEIGHT = 0.5
_TYPE_WEIGHT = {
    "Parking Violation Complaint": 45,
    "Parking Violation - Open311": 25,
    "Abandoned Vehicle": 40,
    "Abandoned Vehicle - Open311": 25,
    "Inoperable Vehicle Complaint": 6,
    "Exterior Nuisance Complaint": 30,
    "Exterior Nuisance - Self Service": 10,
    "Residential Conditions Complaint": 25,
    "Residential Conditions Complaint Tenant": 12,
    "Residential Conditions Complaint HOD": 3,
    "Residential Conditions Complaint HOD Tenant": 2,
    "Graffiti complaint / reporting": 20,
    "Graffiti - Open311": 18,
    "Pothole": 14,
    "Pothole - Open311": 12,
    "Snow & Ice Complaint": 10,
    "Streets Snow & Ice - Open311": 5,
    "Sidewalk Snow & Ice Complaint": 25,
    "Sidewalk Snow Ice - Open311": 8,
    "Sidewalk Snow and Ice - SS": 4,
    "Sidewalk Snow and Ice - SS City": 2,
    "Sidewalk Snow Removal Resources": 2,
    "Sidewalk Snow & Sand Letter Question": 2,
    "Sand Barrel": 2,
    "Street Light Outage": 12,
    "Street Light Outage - Open311": 8,
    "Street Light Trouble": 5,
    "Street Light Trouble - Open311": 3,
    "Xcel Street Light Trouble": 3,
    "Street Light Wreck/Damage": 1,
    "Illegal Dumping Complaint": 15,
    "Solid Waste General Issues": 15,
    "Solid Waste Overflow Litter": 3,
    "Solid Waste Overflowing Litter - Open311": 2,
    "Homeless Encampment": 8,
    "Traffic Signal Trouble": 6,
    "Traffic Signal Trouble - Open311": 3,
    "Traffic Signal Timing Issue": 3,
    "Traffic Signal Timing - Open311": 2,
    "Traffic - General Issue": 4,
    "Traffic Sign - Repair": 4,
    "Traffic Sign Repair - Open311": 2,
    "Animal Complaint - Livability": 8,
    "Animal Complaint - Public Health": 3,
    "Deceased Animal Pick Up": 6,
    "Utility Billing General Inquiry": 10,
    "Stop & Start Utility Service - Move Out / In": 4,
    "Start Utility Service - Move In / Buy Property": 3,
    "Stop Utility Service - Move Out / Sell Property": 3,
    "Meter Reading / Service Appointment": 3,
    "Water Service Issue": 3,
    "Water Main Break": 1,
    "Hydrant Issue": 2,
    "Sewer Issues": 4,
    "Rental License Complaint": 3,
    "Vacant Building / Open to Trespass": 3,
    "Noise Pollution Complaint": 3,
    "Fireworks Complaint": 1,
    "Grass & Weed Complaint": 6,
    "Trees Down": 3,
    "Debris in the Street or Alley": 4,
    "General Street Complaint": 3,
    "Sidewalk Obstruction Complaint": 3,
    "Sidewalk Structural Complaint": 2,
    "Sidewalk Structural - Open311": 1,
    "Shared Mobility Issue": 1,
    "Dumpster and Storage Container Complaint": 2,
    "Campaign Sign Complaint": 0.5,
    "Commercial Food Safety/Sanitation Complaint": 1.5,
    "Suspicious Activity": 1,
}
# Seasonal multipliers by calendar month (Jan..Dec) for request types with a season.
_SNOW = [3.0, 2.5, 1.5, 0.4, 0.02, 0.02, 0.02, 0.02, 0.02, 0.05, 0.8, 2.5]
_SEASONS: list[tuple[tuple[str, ...], list[float]]] = [
    (("Snow", "Sand Barrel"), _SNOW),
    (("Pothole",), [0.8, 1.5, 3.0, 3.0, 2.0, 1.0, 0.6, 0.5, 0.5, 0.5, 0.6, 0.7]),
    (("Grass & Weed",), [0.02, 0.02, 0.05, 0.3, 1.5, 3.0, 3.0, 3.0, 2.0, 0.6, 0.1, 0.02]),
    (("Fireworks",), [0.5, 0.1, 0.1, 0.2, 0.5, 5.0, 12.0, 1.0, 0.3, 0.2, 0.1, 0.3]),
    (("Campaign Sign",), [0.3, 0.3, 0.3, 0.3, 0.3, 0.5, 0.8, 1.0, 2.0, 5.0, 3.0, 0.3]),
    (("Shared Mobility",), [0.1, 0.1, 0.3, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0, 1.5, 0.3, 0.1]),
    (("Trees Down",), [0.6, 0.6, 0.6, 0.8, 1.5, 2.5, 2.5, 2.0, 1.0, 0.8, 0.6, 0.6]),
    (
        ("Exterior Nuisance", "Homeless Encampment", "Illegal Dumping", "Graffiti", "Noise"),
        [0.7, 0.7, 0.8, 1.0, 1.2, 1.3, 1.3, 1.3, 1.2, 1.0, 0.8, 0.7],
    ),
]
# Average requests per month by year (about 61,000-67,000 a year, in line with the 61,000 of 2006
# in the contract's Volumes section) and the month-of-year profile (summer and snow peaks).
_YEAR_LEVEL = {
    2015: 5200,
    2016: 5300,
    2017: 5400,
    2018: 5500,
    2019: 5600,
    2020: 4600,
    2021: 5000,
    2022: 5200,
    2023: 5300,
    2024: 5400,
    2025: 5400,
    2026: 5400,
}
# A year after 2026 repeats 2026's level (horizon.carried_forward): no figure is invented.
_MONTH_FACTOR = [1.10, 1.05, 1.00, 0.95, 1.02, 1.08, 1.12, 1.10, 1.00, 0.95, 0.85, 0.92]
# Hour-of-day profile in Minneapolis local time (the call centre works office hours).
_LOCAL_HOUR_WEIGHTS = [
    0.3,
    0.2,
    0.15,
    0.1,
    0.1,
    0.2,
    0.6,
    2,
    4,
    5,
    5,
    5,
    4.5,
    4.5,
    4.5,
    4,
    3.5,
    2.5,
    1.8,
    1.5,
    1.2,
    1.0,
    0.7,
    0.5,
]
_LOCAL_HOUR_CUM = [sum(_LOCAL_HOUR_WEIGHTS[: i + 1]) for i in range(24)]
_FAST_WORDS = ("Callback", "Inquiry", "Request", "Question", "Information")
# How long a case stays open, in seconds, as bands (cumulative share of cases, shortest, longest):
# quick types (_FAST_WORDS) close within hours to days, others take days to months.
_HOUR, _DAY = 3600, 86400
_FAST_LAGS = ((0.4, 600, 8 * _HOUR), (0.85, 8 * _HOUR, 5 * _DAY), (1.0, 5 * _DAY, 40 * _DAY))
_SLOW_LAGS = (
    (0.12, 600, 6 * _HOUR),
    (0.5, 6 * _HOUR, 4 * _DAY),
    (0.85, 4 * _DAY, 30 * _DAY),
    (1.0, 30 * _DAY, 200 * _DAY),
)
# Minneapolis city limits (lon/lat) and downtown.
_WEST, _EAST, _SOUTH, _NORTH = -93.3290, -93.1937, 44.8902, 45.0512
_DOWNTOWN = (-93.2650, 44.9778)
_MERC_R = 6378137.0


# ---------------------------------------------------------------- helpers


def _opened(record: tuple) -> int:
    return record[0]["OPENEDDATETIME"]


def _seed_for(*parts) -> int:
    return seed_for(0x6A09E667F3BCC908, *parts)


def parse_month(month: str) -> tuple[int, int]:
    if not isinstance(month, str) or not re.fullmatch(r"\d{4}-(0[1-9]|1[0-2])", month):
        raise ValueError(f"month {month!r} is not in YYYY-MM form")
    return int(month[:4]), int(month[5:7])


def month_start_ms(year: int, month: int) -> int:
    return calendar.timegm((year, month, 1, 0, 0, 0)) * 1000


def month_bounds_ms(month: str) -> tuple[int, int]:
    """``[start, end)`` of a UTC month in epoch milliseconds."""
    y, m = parse_month(month)
    ny, nm = (y + 1, 1) if m == 12 else (y, m + 1)
    return month_start_ms(y, m), month_start_ms(ny, nm)


def months_of_year(year: int) -> list[str]:
    return [f"{year:04d}-{m:02d}" for m in range(1, 13)]


def fmt_ms(ms: int) -> str:
    """Epoch ms as ``YYYY-MM-DD HH:MM:SS`` UTC (the form of a ``DATE '...'`` literal)."""
    return _dt.datetime.fromtimestamp(ms / 1000, _dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


def _central_offset_hours(year: int, month: int, day: int) -> int:
    """UTC minus Minneapolis local time, in hours (US DST rules since 2007; day resolution)."""
    d = _dt.date(year, month, day)
    march = _dt.date(year, 3, 1)
    dst_start = march + _dt.timedelta(days=(6 - march.weekday()) % 7 + 7)  # second Sunday of March
    november = _dt.date(year, 11, 1)
    dst_end = november + _dt.timedelta(days=(6 - november.weekday()) % 7)  # first Sunday of November
    return 5 if dst_start <= d < dst_end else 6


def web_mercator(lon: float, lat: float) -> tuple[float, float]:
    x = math.radians(lon) * _MERC_R
    y = math.log(math.tan(math.pi / 4 + math.radians(lat) / 2)) * _MERC_R
    return x, y


def _type_weights(month: int) -> list[float]:
    cum, acc = [], 0.0
    for _subject, _reason, type_name, _title in CATEGORIES:
        w = _TYPE_WEIGHT.get(type_name, _DEFAULT_WEIGHT)
        for words, factors in _SEASONS:
            if any(word in type_name for word in words):
                w *= factors[month - 1]
                break
        acc += w
        cum.append(acc)
    return cum


_TYPE_CUM = {m: _type_weights(m) for m in range(1, 13)}


def _close_lag(rng: random.Random, u: float, bands) -> float:
    """A lag drawn uniformly within the band the uniform draw ``u`` (0 <= u < 1) falls in."""
    for top, low, high in bands:
        if u < top:
            return rng.uniform(low, high)
    raise ValueError(f"u={u} is not below 1")


# ---------------------------------------------------------------- the dataset


class Minneapolis311Dataset(MonthlyRows):
    """Deterministic Minneapolis 311 service requests, generated one month at a time and cached.

    One layer per calendar year (``Public_311_<YEAR>``), ``first_year``..``last_year``.
    ``rows_for_month(month)`` returns the feature ``attributes`` (wire form: real field names,
    dates as epoch-ms ints, ``CLOSEDDATETIME`` null for open cases) whose ``OPENEDDATETIME`` falls in
    that UTC month, in OBJECTID order (which is open-time order). OBJECTIDs are unique across the
    dataset and contiguous within a layer. ``last_edit_date`` (epoch ms) is every layer's initial
    ``editingInfo.lastEditDate`` and the "as of" instant that decides which cases are closed yet.
    """

    name = NAME
    date_field = DATE_FIELD
    object_id_field = OBJECTID_FIELD

    def __init__(
        self,
        seed: int = DEFAULT_SEED,
        rows_per_month: int | None = None,
        last_edit_date: int = DEFAULT_LAST_EDIT_DATE,
        first_year: int = FIRST_YEAR,
        last_year: int | None = None,
        layer_time_zone: str = "UTC",
    ) -> None:
        self.seed = int(seed)
        self.rows_per_month = self._check_rows(rows_per_month)
        self.last_edit_date = int(last_edit_date)
        self.first_year, self._last_year = self._check_years(first_year, last_year)
        self.layer_time_zone = self._check_zone(layer_time_zone)
        self._initial = (self.rows_per_month, self.first_year, self._last_year, self.layer_time_zone)
        self.version = 0  # bumped on every change to served rows or layers (caches key on it)
        self._lock = threading.RLock()
        self._records: dict[str, list[tuple[dict, tuple]]] = {}
        self._edit_counts: dict[str, int] = {}
        self._layer_edits: dict[int, int] = {}  # year -> lastEditDate after late edits

    # ------------------------------------------------------------ configuration

    @staticmethod
    def _check_rows(rows_per_month) -> int | None:
        if rows_per_month is None:
            return None
        if isinstance(rows_per_month, bool) or int(rows_per_month) != rows_per_month:
            raise ValueError("rows_per_month must be an integer or null")
        n = int(rows_per_month)
        if not 0 <= n <= MAX_CONFIGURED_ROWS_PER_MONTH:
            raise ValueError(f"rows_per_month must be 0..{MAX_CONFIGURED_ROWS_PER_MONTH}")
        return n

    @staticmethod
    def _check_zone(name) -> str:
        if not isinstance(name, str) or not name.strip():
            raise ValueError("layer_time_zone must be an IANA time zone name, e.g. America/Chicago")
        try:
            ZoneInfo(name.strip())
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"layer_time_zone {name!r} is not a known IANA time zone") from None
        return name.strip()

    @staticmethod
    def _check_years(first: int, last: int | None) -> tuple[int, int | None]:
        """``last`` None means the rolling horizon: through today's year (the layer of each January)."""
        first = int(first)
        bound = horizon.last_year(DOCUMENTED_LAST_YEAR) if last is None else int(last)
        if not 2000 <= first <= bound <= 2099:
            raise ValueError("years must satisfy 2000 <= first_year <= last_year <= 2099")
        return first, None if last is None else bound

    @property
    def last_year(self) -> int:
        """The last layer served: configured, or through today's year (a new layer every January)."""
        return horizon.last_year(DOCUMENTED_LAST_YEAR) if self._last_year is None else self._last_year

    @property
    def years(self) -> list[int]:
        return list(range(self.first_year, self.last_year + 1))

    def has_year(self, year: int) -> bool:
        return self.first_year <= year <= self.last_year

    def set_rows_per_month(self, rows_per_month: int | None) -> None:
        """Change the month size; regenerates every month (late edits are dropped)."""
        rows = self._check_rows(rows_per_month)
        with self._lock:
            self.rows_per_month = rows
            self._records.clear()
            self._edit_counts.clear()
            self.version += 1

    def set_years(self, first_year: int | None = None, last_year: int | None = None) -> None:
        """Add or drop layers (a new layer appears each January)."""
        first, last = self._check_years(
            self.first_year if first_year is None else first_year, self._last_year if last_year is None else last_year
        )
        with self._lock:
            self.first_year, self._last_year = first, last
            self.version += 1

    def set_layer_time_zone(self, name: str) -> None:
        """File requests into year layers by their year in this zone (``UTC``: the UTC year)."""
        zone = self._check_zone(name)
        with self._lock:
            self.layer_time_zone = zone
            self.version += 1

    def reset(self) -> None:
        """Back to the constructor's configuration: no late edits, initial watermarks."""
        with self._lock:
            self.rows_per_month, self.first_year, self._last_year, self.layer_time_zone = self._initial
            self._records.clear()
            self._edit_counts.clear()
            self._layer_edits.clear()
            self.version += 1

    def cached_months(self) -> list[str]:
        with self._lock:
            return sorted(self._records)

    # ------------------------------------------------------------ layers

    @staticmethod
    def year_of(month: str) -> int:
        return parse_month(month)[0]

    @staticmethod
    def months_of(year: int) -> list[str]:
        return months_of_year(year)

    def layer_name(self, year: int) -> str:
        return f"Public_311_{year}"

    def layer_start_ms(self, year: int) -> int:
        """The first instant (epoch ms) the publisher files in ``year``'s layer: local midnight of
        1 January in ``layer_time_zone``."""
        start = _dt.datetime(year, 1, 1, tzinfo=ZoneInfo(self.layer_time_zone))
        return int(start.timestamp()) * 1000

    def layer_of(self, opened_ms: int) -> int:
        """The year's layer a request opened at ``opened_ms`` is filed in. Requests before the
        first layer's start (or after the last layer's end) are filed in that first (last) layer."""
        year = _dt.datetime.fromtimestamp(opened_ms / 1000, ZoneInfo(self.layer_time_zone)).year
        return min(self.last_year, max(self.first_year, year))

    def layer_months(self, year: int) -> list[str]:
        """The UTC months that may hold requests filed in ``year``'s layer: its own twelve, plus
        the neighbouring years' edge months when layers follow a local year."""
        months = months_of_year(year)
        if self.layer_time_zone != "UTC":
            months = [f"{year - 1:04d}-12"] + months + [f"{year + 1:04d}-01"]
        return [m for m in months if self.has_year(self.year_of(m))]

    def layer_records(self, year: int, month: str) -> list[tuple[dict, tuple]]:
        """The records of ``month`` filed in ``year``'s layer, in OBJECTID order."""
        records = self.records_for_month(month)
        if self.layer_time_zone == "UTC" and self.first_year <= self.year_of(month) <= self.last_year:
            return records if self.year_of(month) == year else []
        # Records are in open-time order: the layer's share of a month is one slice.
        low = 0 if year <= self.first_year else self.layer_start_ms(year)
        high = None if year >= self.last_year else self.layer_start_ms(year + 1)
        start = bisect_left(records, low, key=_opened)
        end = len(records) if high is None else bisect_left(records, high, key=_opened)
        return records[start:end] if start or end != len(records) else records

    def layer_month_count(self, year: int, month: str) -> int:
        if self.layer_time_zone == "UTC":
            return self.month_count(month) if self.year_of(month) == year else 0
        return len(self.layer_records(year, month))

    def layer_last_edit_date(self, year: int) -> int:
        with self._lock:
            return self._layer_edits.get(year, self._initial_edit_date(year))

    def _initial_edit_date(self, year: int) -> int:
        """A documented year's layer starts at ``last_edit_date``; a later layer no earlier than its
        creation early on 1 January (editing_info's schema instant), so its watermark is its own."""
        if year <= DOCUMENTED_LAST_YEAR:
            return self.last_edit_date
        return max(self.last_edit_date, month_start_ms(year, 1) + 6 * 3_600_000)

    def editing_info(self, year: int) -> dict:
        last = self.layer_last_edit_date(year)
        schema = min(last, month_start_ms(year, 1) + 6 * 3_600_000)  # layer created early on 1 January
        return {"lastEditDate": last, "schemaLastEditDate": schema, "dataLastEditDate": last}

    def fields(self) -> list[dict]:
        """The layer's ``fields`` (layer metadata form)."""
        out = []
        for name, kind, length in FIELDS:
            field = {"name": name, "type": kind, "alias": name, "sqlType": "sqlTypeOther"}
            if length is not None:
                field["length"] = length
            field.update(
                nullable=name != OBJECTID_FIELD, editable=name != OBJECTID_FIELD, domain=None, defaultValue=None
            )
            out.append(field)
        return out

    def field_types(self) -> dict[str, str]:
        return {name: kind for name, kind, _l in FIELDS}

    # ------------------------------------------------------------ counts and ids

    def month_count(self, month: str) -> int:
        y, m = parse_month(month)
        if not self.has_year(y):
            return 0
        if self.rows_per_month is not None:
            return self.rows_per_month
        rng = random.Random(_seed_for(self.seed, "count", month))
        level = horizon.carried_forward(_YEAR_LEVEL, y)
        days = calendar.monthrange(y, m)[1]
        n = level * _MONTH_FACTOR[m - 1] * days / 30.44 * rng.uniform(0.95, 1.05)
        return int(min(MAX_ROWS_PER_MONTH, max(0, n)))

    def layer_count(self, year: int) -> int:
        return sum(self.layer_month_count(year, month) for month in self.layer_months(year))

    def first_object_id(self, month: str) -> int:
        """The OBJECTID of the month's first row (ids run on through the layer's year)."""
        y, m = parse_month(month)
        before = sum(self.month_count(f"{y:04d}-{k:02d}") for k in range(1, m))
        return (y - 2000) * self.object_id_stride() + before + 1

    def object_id_stride(self) -> int:
        """OBJECTIDs of year Y start at (Y - 2000) * stride + 1 (1,000,000 unless a configured
        month is larger than any modelled one)."""
        if self.rows_per_month is not None and self.rows_per_month > MAX_ROWS_PER_MONTH:
            return _LARGE_OBJECTID_YEAR_STRIDE
        return _OBJECTID_YEAR_STRIDE

    @staticmethod
    def date_range(month: str) -> tuple[int, int]:
        """Inclusive ``(first, last)`` epoch ms of the month's OPENEDDATETIME values (UTC)."""
        start, end = month_bounds_ms(month)
        return start, end - 1

    def object_id_range(self, month: str) -> tuple[int, int] | None:
        """``(first, last)`` OBJECTID of the month, or None when it has no rows."""
        n = self.month_count(month)
        if n == 0:
            return None
        first = self.first_object_id(month)
        return first, first + n - 1

    # ------------------------------------------------------------ rows

    def rows_for_month(self, month: str) -> list[dict]:
        """The month's feature attributes (a new list; do not mutate the dicts)."""
        return [attrs for attrs, _geom in self.records_for_month(month)]

    def records_for_month(self, month: str) -> list[tuple[dict, tuple]]:
        """``(attributes, (x, y, lon, lat))`` pairs in OBJECTID order: x/y Web Mercator (the
        layer's native reference, equal to XCOORD/YCOORD), lon/lat WGS84. Cached and shared."""
        with self._lock:
            records = self._records.get(month)
            if records is None:
                records = self._generate(month)
                self._records[month] = records
            return records

    def layer_rows(self, year: int) -> list[dict]:
        """Every row of a year's layer, in OBJECTID order."""
        out: list[dict] = []
        for month in self.layer_months(year):
            out.extend(attrs for attrs, _geom in self.layer_records(year, month))
        return out

    def apply_late_edits(self, month: str, n: int) -> list[int]:
        """Edit ``n`` requests of ``month``: open cases get closed, closed ones are reopened or get
        a new close date; their ``LastUpdateDate`` becomes the layer's new ``lastEditDate``, which
        moves one hour on (``dataLastEditDate`` with it). Returns the edited OBJECTIDs.
        Deterministic per (seed, month, number of earlier edits of the month)."""
        n = edit_count(n)
        year = self.year_of(month)
        if not self.has_year(year):
            raise ValueError(f"no layer for {month} (years {self.first_year}..{self.last_year})")
        with self._lock:
            records = self.records_for_month(month)
            n = min(n, len(records))
            count = self._edit_counts.get(month, 0)
            self._edit_counts[month] = count + 1
            rng = random.Random(_seed_for(self.seed, "edit", month, count))
            chosen = sorted(rng.sample(range(len(records)), n))
            edit_ms = self.layer_last_edit_date(year) + 3_600_000
            self._layer_edits[year] = edit_ms
            edited = []
            for i in chosen:
                attrs, geom = records[i]
                attrs = dict(attrs)
                opened = attrs["OPENEDDATETIME"]
                closed_at = max(opened, edit_ms - rng.randrange(3600) * 1000)
                if attrs["CLOSEDDATETIME"] is None or attrs["CASESTATUS"] == CASE_OPEN:
                    attrs["CASESTATUS"] = CASE_CLOSED
                    attrs["CLOSEDDATETIME"] = closed_at
                elif rng.random() < 0.5:
                    attrs["CASESTATUS"] = CASE_OPEN  # reopened
                    attrs["CLOSEDDATETIME"] = None
                else:
                    attrs["CLOSEDDATETIME"] = closed_at if closed_at != attrs["CLOSEDDATETIME"] else edit_ms
                attrs["LastUpdateDate"] = edit_ms
                records[i] = (attrs, geom)
                edited.append(attrs["OBJECTID"])
                self._layer_edits[self.layer_of(opened)] = edit_ms  # the layer the request is filed in
            self.version += 1
            return edited

    # ------------------------------------------------------------ generation

    def _generate(self, month: str) -> list[tuple[dict, tuple]]:
        y, m = parse_month(month)
        n = self.month_count(month)
        if n == 0:
            return []
        rng = random.Random(_seed_for(self.seed, "rows", month))
        as_of = self.last_edit_date
        start = month_start_ms(y, m)
        days = calendar.monthrange(y, m)[1]
        day_weights = [0.6 if _dt.date(y, m, d + 1).weekday() >= 5 else 1.0 for d in range(days)]
        offsets = [_central_offset_hours(y, m, d + 1) for d in range(days)]
        chosen_days = rng.choices(range(days), weights=day_weights, k=n)
        local_hours = rng.choices(range(24), cum_weights=_LOCAL_HOUR_CUM, k=n)
        times = sorted(
            start + day * 86_400_000 + ((hour + offsets[day]) % 24) * 3_600_000 + rng.randrange(3600) * 1000
            for day, hour in zip(chosen_days, local_hours)
        )
        categories = rng.choices(CATEGORIES, cum_weights=_TYPE_CUM[m], k=n)
        object_id = self.first_object_id(month)
        before = object_id - 1 - (y - 2000) * self.object_id_stride()
        case_seq = 2 * before  # about two case numbers per request: CASEIDs rise through the year
        case_base = y * _CASEID_YEAR_STRIDE
        records: list[tuple[dict, tuple]] = []
        for opened, (subject, reason, type_name, title) in zip(times, categories):
            fast = any(word in type_name for word in _FAST_WORDS)
            u = rng.random()
            lag_s = _close_lag(rng, u, _FAST_LAGS if fast else _SLOW_LAGS)
            closed_at = opened + int(lag_s) * 1000
            never = rng.random() < 0.015
            is_closed = not never and closed_at <= as_of
            status = CASE_CLOSED if is_closed else CASE_OPEN
            closed = closed_at if is_closed else None
            # dirty rows, as the contract's Quirks warn: closed before opened; status disagreeing
            dirt = rng.random()
            if is_closed and dirt < 0.003:
                closed = opened - rng.randint(60, 3 * 86400) * 1000
            elif dirt < 0.007:
                status = CASE_OPEN if status == CASE_CLOSED else CASE_CLOSED
            if closed is not None:
                last_update = max(closed, opened) + rng.randint(0, 900) * 1000
            else:
                last_update = opened + rng.randint(60, 2 * 86400) * 1000
            if opened <= as_of:  # nothing was updated after the layers' lastEditDate
                last_update = min(last_update, as_of)
            case_seq += rng.randint(1, 3)
            case_id = case_base + case_seq
            if records and rng.random() < 0.004:  # CASEID is not unique in practice
                case_id = records[rng.randrange(len(records))][0]["CASEID"]
            if rng.random() < 0.35:
                lon = min(_EAST, max(_WEST, rng.gauss(_DOWNTOWN[0], 0.012)))
                lat = min(_NORTH, max(_SOUTH, rng.gauss(_DOWNTOWN[1], 0.009)))
            else:
                lon = rng.uniform(_WEST, _EAST)
                lat = rng.uniform(_SOUTH, _NORTH)
            lon, lat = round(lon, 8), round(lat, 8)
            x, y_merc = web_mercator(lon, lat)
            x, y_merc = round(x, 4), round(y_merc, 4)
            accessibility = "Yes" if rng.random() < 0.01 else "No"
            attrs = {
                "OBJECTID": object_id,
                "CASEID": case_id,
                "SUBJECTNAME": subject,
                "REASONNAME": reason,
                "TYPENAME": type_name,
                "TITLE": title,
                "OPENEDDATETIME": opened,
                "CASESTATUS": status,
                "CLOSEDDATETIME": closed,
                "XCOORD": x,
                "YCOORD": y_merc,
                "LastUpdateDate": last_update,
                "IsAccessibilityRelated": accessibility,
            }
            records.append((attrs, (x, y_merc, lon, lat)))
            object_id += 1
        return records
