"""DfT Street Manager monthly archives, generated: the event generator (vocabularies, lifecycles, quirks
and late edits, see :class:`Quirks`) and the ZIP writer that reproduces DfT's end-of-central-directory
defect, in bounded memory. Deterministic per (seed, type, month). The S3-like endpoints that serve
the archives are in ``street_manager.py``, whose docstring describes the archive and its faults.
"""

from __future__ import annotations

import calendar
import datetime as _dt
import hashlib
import random
import struct
import tempfile
import zlib
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, fields, replace
from zoneinfo import ZoneInfo

import orjson

from civic_pipelines.replay.seeds import seed_for
from civic_pipelines.sources.street_manager.contract import ENVELOPE_FIELDS, PERMIT_FIELDS

TYPES = ("permit", "activity", "section_58")
OBJECT_TYPES = {"permit": "PERMIT", "activity": "ACTIVITY", "section_58": "SECTION_58"}
FIRST_MONTH = "2020-07"
PREFIX_FIELDS = "2021-01"  # before it: the 26-key permit field set of the 2020 docs example
COVID_NULL_FROM = "2025-01"
DEFAULT_EVENTS = {"permit": 400, "activity": 60, "section_58": 20}
REAL_PERMIT_EVENTS = 1_081_996  # one real permit archive (contract, Volumes)
GENERATOR_VERSION = 1  # part of every cache key: bump when the bytes change
SALT = 0x5EE7_3A4A
_LONDON = ZoneInfo("Europe/London")
_MEMORY_LIMIT = 64 << 20  # archives up to this size are kept in memory; larger ones on disk
_PIECE = 1 << 20

# ---------------------------------------------------------------- vocabularies (contract)

WORK_CATEGORIES = [  # display, ref, weight
    ("Minor", "minor", 46),
    ("Standard", "standard", 22),
    ("Major", "major", 6),
    ("Major (PAA)", "paa", 2),
    ("Immediate - urgent", "immediate_urgent", 14),
    ("Immediate - emergency", "immediate_emergency", 9),
    ("HS2 (Highway)", "hs2_highway", 1),
]
TRAFFIC_MANAGEMENT = [  # ref, display (the contract spells out road_closure, stop_go_boards, multi_way_signals)
    ("give_and_take", "Give and take"),
    ("some_carriageway_incursion", "Some carriageway incursion"),
    ("no_carriageway_incursion", "No carriageway incursion"),
    ("two_way_signals", "Two-way signals"),
    ("road_closure", "Road closure"),
    ("multi_way_signals", "Multi-way signals"),
    ("lane_closure", "Lane closure"),
    ("stop_go_boards", "Stop/go boards"),
    ("contra_flow", "Contra-flow"),
    ("priority_working", "Priority working"),
    ("convoy_workings", "Convoy workings"),
]
TM_WEIGHTS = [18, 16, 22, 12, 8, 4, 6, 6, 2, 5, 1]
WORK_STATUS = {
    "planned": "Works planned",
    "in_progress": "Works in progress",
    "completed": "Works completed",
    "cancelled": "Works cancelled",
}
PERMIT_ACTIVITY_TYPES = ["Utility asset works", "Remedial works", "Section 58"]
LOCATION_TYPES = ["Carriageway", "Footpath", "Cycleway"]
PERMIT_CONDITIONS = ["NCT01a", "NCT01b", "NCT02a", "NCT05a", "NCT06a", "NCT08a", "NCT11a", "NCT11b"]
CLOSE_FOOTWAY = [
    ("no", "No"),
    ("yes_provide_pedestrian_walkway", "Yes, a pedestrian walkway will be provided"),
    ("yes_provide_alternative_route", "Yes, an alternative route will be provided"),
]
ACTIVITY_TYPES = ["event", "skip", "scaffolding"]  # the contract: events, skips, scaffolding
S58_DURATION, S58_EXTENT = "six_months", "whole_road"

PERMIT_EVENT_TYPES = [
    "PERMIT_SUBMITTED",
    "PERMIT_GRANTED",
    "PERMIT_REFUSED",
    "PERMIT_CANCELLED",
    "PERMIT_REVOKED",
    "PERMIT_ALTERATION_SUBMITTED",
    "PERMIT_ALTERATION_GRANTED",
    "WORK_START",
    "WORK_STOP",
    "WORK_START_REVERTED",
    "WORK_STOP_REVERTED",
    "CURRENT_TRAFFIC_MANAGEMENT_UPDATED",
]
ACTIVITY_EVENT_TYPES = ["ACTIVITY_CREATED", "ACTIVITY_UPDATED", "ACTIVITY_CANCELLED"]
SECTION_58_EVENT_TYPES = ["SECTION_58_CREATED", "SECTION_58_IN_FORCE", "SECTION_58_CANCELLED", "SECTION_58_CLOSED"]
EVENT_TYPES = {"permit": PERMIT_EVENT_TYPES, "activity": ACTIVITY_EVENT_TYPES, "section_58": SECTION_58_EVENT_TYPES}
# Section 58 statuses other than "proposed" are inferred from the event types (not documented).
S58_STATUS = {
    "SECTION_58_CREATED": "proposed",
    "SECTION_58_IN_FORCE": "in_force",
    "SECTION_58_CANCELLED": "cancelled",
    "SECTION_58_CLOSED": "closed",
}

# A permit's life within one month: sequences of events with (permit_status, work_status ref).
LIFECYCLES = [  # events, weight
    (("PERMIT_SUBMITTED",), 14),
    (("PERMIT_SUBMITTED", "PERMIT_GRANTED"), 16),
    (("PERMIT_GRANTED",), 10),
    (("PERMIT_GRANTED", "WORK_START"), 9),
    (("WORK_START",), 8),
    (("WORK_START", "WORK_STOP"), 12),
    (("WORK_STOP",), 9),
    (("PERMIT_ALTERATION_SUBMITTED", "PERMIT_ALTERATION_GRANTED"), 5),
    (("WORK_START", "CURRENT_TRAFFIC_MANAGEMENT_UPDATED"), 4),
    (("PERMIT_CANCELLED",), 4),
    (("PERMIT_SUBMITTED", "PERMIT_REFUSED"), 2),
    (("PERMIT_REVOKED",), 1),
    (("WORK_START", "WORK_START_REVERTED"), 1),
    (("WORK_STOP", "WORK_STOP_REVERTED"), 1),
    (("PERMIT_SUBMITTED", "PERMIT_GRANTED", "WORK_START", "WORK_STOP"), 4),
]
_EVENT_STATE = {  # event type -> (permit_status, work_status_ref, actual_start set?, actual_end set?)
    "PERMIT_SUBMITTED": ("submitted", "planned", False, False),
    "PERMIT_GRANTED": ("granted", "planned", False, False),
    "PERMIT_REFUSED": ("refused", "planned", False, False),
    "PERMIT_CANCELLED": ("cancelled", "cancelled", False, False),
    "PERMIT_REVOKED": ("revoked", "cancelled", False, False),
    "PERMIT_ALTERATION_SUBMITTED": ("permit_modification_request", "planned", False, False),
    "PERMIT_ALTERATION_GRANTED": ("granted", "planned", False, False),
    "WORK_START": ("granted", "in_progress", True, False),
    "WORK_STOP": ("closed", "completed", True, True),
    "WORK_START_REVERTED": ("granted", "planned", False, False),
    "WORK_STOP_REVERTED": ("granted", "in_progress", True, False),
    "CURRENT_TRAFFIC_MANAGEMENT_UPDATED": ("granted", "in_progress", True, False),
}

# (swa code, name, town, BNG centre). Only 4420 and 5990 are real (contract); the rest are
# synthetic authorities placed across England.
AUTHORITIES = [
    ("4420", "SHEFFIELD CITY COUNCIL", "SHEFFIELD", 433674, 380502),
    ("5990", "CITY OF WESTMINSTER", "LONDON", 527155, 182227),
] + [
    (str(9101 + i), f"REPLAY HIGHWAY AUTHORITY {9101 + i}", town, x, y)
    for i, (town, x, y) in enumerate(
        [
            ("REPLAY TOWN A", 430000, 433000),
            ("REPLAY TOWN B", 407000, 286000),
            ("REPLAY TOWN C", 384000, 398000),
            ("REPLAY TOWN D", 359000, 173000),
            ("REPLAY TOWN E", 424000, 564000),
            ("REPLAY TOWN F", 623000, 308000),
            ("REPLAY TOWN G", 248000, 55000),
            ("REPLAY TOWN H", 457000, 340000),
            ("REPLAY TOWN I", 335000, 390000),
            ("REPLAY TOWN J", 545000, 258000),
        ]
    )
]
AUTHORITY_WEIGHTS = [6, 8] + [5] * 10
# Promoters: the highway authority itself (its own works), or a synthetic utility; (code, name, prefix)
UTILITIES = [
    (str(9201 + i), f"REPLAY {kind} {9201 + i}", prefix)
    for i, (kind, prefix) in enumerate(
        [("WATER", "RW"), ("GAS", "RG"), ("TELECOM", "RT"), ("ELECTRICITY", "RE"), ("WATER", "RX"), ("TELECOM", "RY")]
    )
]
TEST_PROMOTER = ("STPR", "Smoke Test Promoter", "TSR")
STREETS = [
    "HIGH STREET",
    "CHURCH STREET",
    "STATION ROAD",
    "MAIN ROAD",
    "MILL LANE",
    "PARK ROAD",
    "VICTORIA ROAD",
    "QUEEN STREET",
    "LONDON ROAD",
    "HIGH STREET NORTH",
    "LOWEDGES ROAD",
    "SCHOOL LANE",
    "NEW ROAD",
    "GREEN LANE",
    "MANOR ROAD",
    "KING STREET",
    "BRIDGE STREET",
    "WEST STREET",
    "NORTH ROAD",
    "THE AVENUE",
]
AREAS = ["", "CITY CENTRE", "NORTH", "SOUTH", "EAST", "WEST", "OLD TOWN", "RIVERSIDE"]

# The contract's field lists (the extractor checks the same ones); the 2020 docs example carries
# the first 26 permit fields only.
PERMIT_FIELDS_2020 = PERMIT_FIELDS[:26]
PERMIT_FIELDS_LATER = PERMIT_FIELDS[26:]
REFERENCE_FIELDS = {
    "permit": "permit_reference_number",
    "activity": "activity_reference_number",
    "section_58": "section_58_reference_number",
}
# The data faults this module implements (server.py's docstring lists them), in the order applied.
MODULE_FAULTS = (
    "empty_month",
    "malformed_row",
    "drop_field",
    "new_field",
    "retype_field",
    "truncate_archive",
    "corrupt_archive",
)
FAULT_OPTIONS = {"drop_field": None, "new_field": "replay_new_field", "retype_field": "usrn", "corrupt": "member"}


@dataclass(frozen=True)
class Quirks:
    """How often each quirk appears (shares of events unless said otherwise)."""

    spelling_variant_rate: float = 0.04  # event type as lower-hyphen ("work-start") or title ("Work Start")
    tm_type_spelling_rate: float = 0.5  # CURRENT_TRAFFIC_MANAGEMENT_TYPE_UPDATED instead of ..._UPDATED
    bare_time_rate: float = 0.02  # proposed_start_time "13:50" instead of an ISO instant (permits)
    extra_field_rate: float = 0.01  # object_data gains the fields of extra_fields
    extra_fields: tuple = (("replay_unannounced_field", "added without notice"),)
    missing_coordinates_rate: float = 0.09  # doubled for Major/Standard/PAA works, quartered for others
    empty_coordinates_share: float = 0.3  # of the missing ones: "" rather than null
    geometry_mix: tuple = (0.6, 0.3, 0.1)  # point, linestring, polygon
    empty_area_rate: float = 0.3
    test_data_rate: float = 0.0005  # STPR "Smoke Test Promoter" on "Fake Street" in 5990
    pretty_rate: float = 0.0  # members pretty-printed like the docs examples (the archives are compact)
    bad_members: int = 0  # contract-breaking members (for quarantine); spread through the archive
    data_descriptors: bool = False  # sizes after the data (flag 0x08), as a streaming zip writer does

    @classmethod
    def from_config(cls, values: dict, base: Quirks | None = None) -> Quirks:
        base = base or cls()
        known = {f.name for f in fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"unknown quirk(s) {sorted(unknown)}; known: {sorted(known)}")
        clean = {}
        for name, value in values.items():
            if name == "extra_fields":
                value = tuple((str(k), v) for k, v in dict(value).items())
            elif name == "geometry_mix":
                value = tuple(float(v) for v in value)
                if len(value) != 3 or min(value) < 0 or not sum(value):
                    raise ValueError("geometry_mix is three non-negative shares: point, linestring, polygon")
            elif name in ("bad_members",):
                value = int(value)
            elif name == "data_descriptors":
                value = bool(value)
            else:
                value = float(value)
                if not 0 <= value <= 1:
                    raise ValueError(f"quirk {name} is a share between 0 and 1")
            clean[name] = value
        return replace(base, **clean)


@dataclass(frozen=True)
class ArchiveSpec:
    """Everything that determines one archive's bytes."""

    type: str
    month: str
    events: int
    seed: int = 20240101
    revision: int = 0
    quirks: Quirks = field(default_factory=Quirks)
    central_directory: str = "corrupt"  # "corrupt" (DfT's defect) or "valid"
    truncate: bool = False  # cut the archive short, inside a member, with no central directory
    faults: tuple = ()  # data faults (MODULE_FAULTS) applied to this archive
    fault_options: tuple = ()  # (name, value) pairs overriding FAULT_OPTIONS

    def __post_init__(self) -> None:
        if self.type not in TYPES:
            raise ValueError(f"archive type {self.type!r}; known: {', '.join(TYPES)}")
        if self.central_directory not in ("corrupt", "valid"):
            raise ValueError("central_directory is 'corrupt' or 'valid'")
        if self.events < 0:
            raise ValueError("events must be >= 0")
        unknown = set(self.faults) - set(MODULE_FAULTS)
        if unknown:
            raise ValueError(f"unknown archive fault(s) {sorted(unknown)}; known: {', '.join(MODULE_FAULTS)}")

    @property
    def total(self) -> int:
        """How many events the archive carries (before malformed_row's extra members)."""
        return 0 if "empty_month" in self.faults else self.events + 5 * self.revision

    def option(self, name: str):
        return dict(self.fault_options).get(name, FAULT_OPTIONS[name])

    @property
    def key(self) -> str:
        """A digest of the spec: the archive's cache name (unfaulted archives keep their old names)."""
        values = asdict(self)
        if not self.faults:
            values.pop("faults")
            values.pop("fault_options")
        payload = orjson.dumps({**values, "v": GENERATOR_VERSION}, option=orjson.OPT_SORT_KEYS)
        return hashlib.sha256(payload).hexdigest()[:20]


# ---------------------------------------------------------------- time helpers


def _month_parts(month: str) -> tuple[int, int]:
    year, mon = month.split("-")
    return int(year), int(mon)


def month_index(month: str) -> int:
    year, mon = _month_parts(month)
    return (year - 2020) * 12 + mon - 1


class _Clock:
    """Fast ISO strings for instants and UK-local day boundaries near one month (cached per day)."""

    def __init__(self, month: str) -> None:
        year, mon = _month_parts(month)
        self.start = calendar.timegm((year, mon, 1, 0, 0, 0))
        self.seconds = calendar.monthrange(year, mon)[1] * 86400
        self._days: dict[int, str] = {}
        self._bounds: dict[int, tuple[str, str]] = {}

    def iso(self, epoch_ms: int) -> str:
        day, ms = divmod(epoch_ms, 86_400_000)
        text = self._days.get(day)
        if text is None:
            text = self._days[day] = _dt.datetime.fromtimestamp(day * 86400, _dt.UTC).strftime("%Y-%m-%d")
        s, milli = divmod(ms, 1000)
        h, rest = divmod(s, 3600)
        m, sec = divmod(rest, 60)
        return f"{text}T{h:02d}:{m:02d}:{sec:02d}.{milli:03d}Z"

    def local_day(self, epoch_s: float) -> int:
        """The UK-local calendar day (days since the epoch) of an instant."""
        return _dt.datetime.fromtimestamp(epoch_s, _LONDON).date().toordinal() - 719163

    def day_bounds(self, day: int) -> tuple[str, str]:
        """The UTC instants of 00:00 and 23:59 UK time on a local day (``...T23:00:00.000Z`` in summer)."""
        bounds = self._bounds.get(day)
        if bounds is None:
            date = _dt.date.fromordinal(day + 719163)
            start = _dt.datetime(date.year, date.month, date.day, tzinfo=_LONDON).timestamp()
            end = _dt.datetime(date.year, date.month, date.day, 23, 59, tzinfo=_LONDON).timestamp()
            bounds = self._bounds[day] = (self.iso(int(start * 1000)), self.iso(int(end * 1000)))
        return bounds

    def local_to_utc_iso(self, day: int, minute_of_day: int) -> str:
        date = _dt.date.fromordinal(day + 719163)
        when = _dt.datetime(date.year, date.month, date.day, minute_of_day // 60, minute_of_day % 60, tzinfo=_LONDON)
        return self.iso(int(when.timestamp() * 1000))


# ---------------------------------------------------------------- events


def _choice_weighted(rng: random.Random, items, cum_weights):
    return rng.choices(items, cum_weights=cum_weights, k=1)[0]


def _cum(weights):
    total, out = 0, []
    for w in weights:
        total += w
        out.append(total)
    return out


_CAT_CUM = _cum([w for *_, w in WORK_CATEGORIES])
_TM_CUM = _cum(TM_WEIGHTS)
_AUTH_CUM = _cum(AUTHORITY_WEIGHTS)
_LIFE_CUM = _cum([w for _, w in LIFECYCLES])


def _variant_spelling(event_type: str, rng: random.Random) -> str:
    if rng.random() < 0.5:
        return event_type.lower().replace("_", "-")  # work-start (the DfT docs example)
    return " ".join(word.capitalize() for word in event_type.split("_"))  # Work Start


def _geometry(rng: random.Random, cx: float, cy: float, mix: tuple) -> str:
    x = cx + rng.uniform(-6000, 6000)
    y = cy + rng.uniform(-6000, 6000)
    pick = rng.random() * sum(mix)
    if pick < mix[0]:
        return f"POINT({x:.3f} {y:.3f})"
    if pick < mix[0] + mix[1]:
        points = [(x, y)]
        for _ in range(rng.randint(1, 4)):
            x += rng.uniform(-80, 80)
            y += rng.uniform(-80, 80)
            points.append((x, y))
        return "LINESTRING(" + ",".join(f"{px:.2f} {py:.2f}" for px, py in points) + ")"
    w, h = rng.uniform(5, 60), rng.uniform(5, 60)
    ring = [(x, y), (x + w, y), (x + w, y + h), (x, y + h), (x, y)]
    return "POLYGON((" + ",".join(f"{px:.2f} {py:.2f}" for px, py in ring) + "))"


class _EventMaker:
    """Builds one archive's events in order, deterministically from the spec."""

    def __init__(self, spec: ArchiveSpec) -> None:
        self.spec = spec
        self.q = spec.quirks
        self.rng = random.Random(seed_for(SALT, spec.seed, spec.type, spec.month))
        self.clock = _Clock(spec.month)
        self.old_fields = spec.month < PREFIX_FIELDS
        self.covid_null = spec.month >= COVID_NULL_FROM
        mi = month_index(spec.month)
        type_offset = {"permit": 0, "activity": 7_000_000, "section_58": 8_500_000}[spec.type]
        self.ref_base = 100_000_000 + mi * 10_000_000 + type_offset
        self.object_base = mi * 10_000_000
        cap = 7_000_000 if spec.type == "permit" else 1_500_000
        if spec.events + 5 * spec.revision > cap:
            raise ValueError(f"at most {cap} {spec.type} events per month (event references would collide)")
        self.emitted = 0

    # -- shared pieces

    def _authority(self):
        return _choice_weighted(self.rng, AUTHORITIES, _AUTH_CUM)

    def _coordinates(self, cx, cy, major: bool):
        q, rng = self.q, self.rng
        rate = q.missing_coordinates_rate * (2 if major else 0.25)
        if rng.random() < rate:
            return "" if rng.random() < q.empty_coordinates_share else None
        return _geometry(rng, cx, cy, q.geometry_mix)

    def _street(self, swa: str):
        index = self.rng.randrange(len(STREETS))
        return STREETS[index], str(
            int(swa) * 10_000 % 90_000_000 + 1_000_000 + index * 37
        ) if swa.isdigit() else "8401426"

    def _event_type(self, event_type: str) -> str:
        rng, q = self.rng, self.q
        if event_type == "CURRENT_TRAFFIC_MANAGEMENT_UPDATED" and rng.random() < q.tm_type_spelling_rate:
            event_type = "CURRENT_TRAFFIC_MANAGEMENT_TYPE_UPDATED"
        if rng.random() < q.spelling_variant_rate:
            return _variant_spelling(event_type, rng)
        return event_type

    def _times(self, count: int) -> list[int]:
        """``count`` sorted event instants (epoch ms) within the month."""
        start, span = self.clock.start * 1000, self.clock.seconds * 1000
        return sorted(start + int(self.rng.random() * span) for _ in range(count))

    def _envelope(self, event_type: str, object_data: dict, when_ms: int, reference: str) -> dict:
        return {
            "event_reference": self.ref_base + self.emitted,
            "event_type": self._event_type(event_type),
            "object_data": object_data,
            "event_time": self.clock.iso(when_ms),
            "object_type": OBJECT_TYPES[self.spec.type],
            "object_reference": reference,
            "version": 1,
        }

    def _extra(self, object_data: dict) -> None:
        if self.q.extra_fields and self.rng.random() < self.q.extra_field_rate:
            for name, value in self.q.extra_fields:
                object_data[name] = value

    # -- per type: each yields the events of one object (a permit, an activity, a notice)

    def permit_events(self, serial: int) -> Iterator[dict]:
        rng, q, clock = self.rng, self.q, self.clock
        test = rng.random() < q.test_data_rate
        if test:
            swa, ha_name, town, cx, cy = AUTHORITIES[1]
            p_code, p_name, prefix = TEST_PROMOTER
            street, usrn = "Fake Street", "8401426"
        else:
            swa, ha_name, town, cx, cy = self._authority()
            if rng.random() < 0.4:
                p_code, p_name, prefix = swa, ha_name, "LC" if swa == "4420" else f"L{swa[-1]}"
            else:
                p_code, p_name, prefix = UTILITIES[rng.randrange(len(UTILITIES))]
            street, usrn = self._street(swa)
        work_ref = f"{prefix}{self.object_base + serial:011d}"
        permit_ref = f"{work_ref}-{'01' if rng.random() < 0.9 else '02'}"
        cat_display, cat_ref, _ = _choice_weighted(rng, WORK_CATEGORIES, _CAT_CUM)
        tm_ref, tm_display = _choice_weighted(rng, TRAFFIC_MANAGEMENT, _TM_CUM)
        major = cat_ref in ("major", "standard", "paa")
        coordinates = self._coordinates(cx, cy, major)
        area = "" if rng.random() < q.empty_area_rate else rng.choice(AREAS[1:])
        activity_type = rng.choice(PERMIT_ACTIVITY_TYPES)
        location_type = ", ".join(sorted(rng.sample(LOCATION_TYPES, rng.choice((1, 1, 1, 2)))))
        conditions = ", ".join(rng.sample(PERMIT_CONDITIONS, rng.randint(1, 6)))
        collaborative = "Yes" if rng.random() < 0.08 else "No"
        close_ref, close_display = rng.choice(CLOSE_FOOTWAY)
        covid = None if self.covid_null else ("Yes" if rng.random() < 0.03 else "No")
        road_category = str(rng.randrange(10))
        ttro = (
            "Yes"
            if tm_ref == "road_closure" and rng.random() < 0.5
            else ("Not provided" if rng.random() < 0.05 else "No")
        )
        sensitive = "Yes" if rng.random() < 0.3 else "No"
        deemed = "Yes" if rng.random() < 0.05 else "No"
        sequence = _choice_weighted(rng, LIFECYCLES, _LIFE_CUM)[0]
        times = self._times(len(sequence))
        duration_days = rng.choice((1, 1, 2, 3, 3, 5, 10, 20)) if not major else rng.randint(3, 40)
        first_day = clock.local_day(times[0] / 1000)
        if sequence[0] in (
            "PERMIT_SUBMITTED",
            "PERMIT_GRANTED",
            "PERMIT_ALTERATION_SUBMITTED",
            "PERMIT_CANCELLED",
            "PERMIT_REVOKED",
        ):
            start_day = first_day + rng.randint(3, 30)
        else:
            start_day = first_day - rng.randint(0, 5)
        end_day = start_day + duration_days - 1
        start_minute = rng.choice((0, 0, 420, 450, 480, 570, 830))
        bare_time = rng.random() < q.bare_time_rate
        start_iso, _ = clock.day_bounds(start_day)
        _, end_iso = clock.day_bounds(end_day)
        if bare_time:
            start_time = f"{start_minute // 60:02d}:{start_minute % 60:02d}"
        elif self.old_fields and rng.random() < 0.5:
            start_time = None
        else:
            start_time = clock.local_to_utc_iso(start_day, start_minute) if start_minute else start_iso
        actual_start = actual_end = None
        current_tm = None
        for event_type, when in zip(sequence, times):
            permit_status, status_ref, started, stopped = _EVENT_STATE[event_type]
            if started and actual_start is None:
                actual_start = clock.iso(min(when, when - rng.randint(0, 3_600_000)))
            if stopped and actual_end is None:
                actual_end = clock.iso(when)
            if event_type == "WORK_START_REVERTED":
                actual_start = None
            if event_type == "WORK_STOP_REVERTED":
                actual_end = None
            if event_type == "CURRENT_TRAFFIC_MANAGEMENT_UPDATED":
                current_tm = (*rng.choice(TRAFFIC_MANAGEMENT)[::-1], clock.iso(when))
            data = {
                "work_reference_number": work_ref,
                "permit_reference_number": permit_ref,
                "promoter_swa_code": p_code,
                "promoter_organisation": p_name,
                "highway_authority": ha_name,
                "works_location_coordinates": coordinates,
                "street_name": street,
                "area_name": area,
                "work_category": cat_display,
                "traffic_management_type": tm_display,
                "proposed_start_date": start_iso,
                "proposed_start_time": start_time,
                "proposed_end_date": end_iso,
                "proposed_end_time": end_iso if not self.old_fields else None,
                "actual_start_date_time": actual_start,
                "actual_end_date_time": actual_end,
                "work_status": WORK_STATUS[status_ref],
                "usrn": usrn,
                "highway_authority_swa_code": swa,
                "work_category_ref": cat_ref,
                "traffic_management_type_ref": tm_ref,
                "work_status_ref": status_ref,
                "activity_type": activity_type,
                "is_ttro_required": ttro,
                "is_covid_19_response": covid,
                "works_location_type": location_type,
            }
            if not self.old_fields:
                data["permit_conditions"] = conditions
                data["road_category"] = road_category
                data["is_traffic_sensitive"] = sensitive
                data["is_deemed"] = deemed
                data["permit_status"] = permit_status
                data["town"] = town
                data["collaborative_working"] = collaborative
                if collaborative == "Yes":
                    data["collaboration_type"] = "Other"
                    data["collaboration_type_ref"] = "other"
                data["close_footway"] = close_display
                data["close_footway_ref"] = close_ref
                data["current_traffic_management_type"] = current_tm[0] if current_tm else None
                data["current_traffic_management_type_ref"] = current_tm[1] if current_tm else None
                data["current_traffic_management_update_date"] = current_tm[2] if current_tm else None
            self._extra(data)
            yield self._envelope(event_type, data, when, permit_ref)

    def activity_events(self, serial: int) -> Iterator[dict]:
        rng, clock = self.rng, self.clock
        swa, ha_name, town, cx, cy = self._authority()
        street, usrn = self._street(swa)
        reference = f"ARN-{swa}-{(self.object_base + serial) % 100_000_000:08d}"
        kind = rng.choices(ACTIVITY_TYPES, weights=(2, 5, 4))[0]
        coordinates = self._coordinates(cx, cy, False)
        road_category = str(rng.randrange(10))
        sequence = rng.choice(
            (
                ("ACTIVITY_CREATED",),
                ("ACTIVITY_CREATED", "ACTIVITY_UPDATED"),
                ("ACTIVITY_UPDATED",),
                ("ACTIVITY_CREATED", "ACTIVITY_CANCELLED"),
                ("ACTIVITY_CANCELLED",),
            )
        )
        times = self._times(len(sequence))
        start_day = clock.local_day(times[0] / 1000) + rng.randint(1, 20)
        end_day = start_day + rng.randint(0, 30)
        start_date, _ = clock.day_bounds(start_day)
        end_date, _ = clock.day_bounds(end_day)
        tm_ref = rng.choice(TRAFFIC_MANAGEMENT)[0]
        location = ", ".join(sorted(rng.sample(LOCATION_TYPES, rng.choice((1, 2)))))
        for event_type, when in zip(sequence, times):
            data = {
                "activity_reference_number": reference,
                "usrn": usrn,
                "street_name": street,
                "town": town,
                "area_name": rng.choice(AREAS),
                "road_category": road_category,
                "activity_coordinates": coordinates,
                "activity_name": {"event": "Street event", "skip": "Skip on highway", "scaffolding": "Scaffolding"}[
                    kind
                ],
                "activity_type": kind,
                "activity_type_details": "Activity type details",
                "start_date": start_date,
                "start_time": clock.local_to_utc_iso(start_day, 480),
                "end_date": end_date,
                "end_time": clock.local_to_utc_iso(end_day, 1080),
                "activity_location_type": location,
                "activity_location_description": "Description of activity location",
                "traffic_management_type": tm_ref,
                "traffic_management_required": "Yes" if tm_ref in ("road_closure", "lane_closure") else "No",
                "collaborative_working": "No",
                "cancelled": "Yes" if event_type == "ACTIVITY_CANCELLED" else "No",
                "highway_authority": ha_name,
                "highway_authority_swa_code": swa,
            }
            self._extra(data)
            yield self._envelope(event_type, data, when, reference)

    def section_58_events(self, serial: int) -> Iterator[dict]:
        rng, clock = self.rng, self.clock
        swa, ha_name, town, cx, cy = self._authority()
        street, usrn = self._street(swa)
        reference = f"S58-{swa}-{(self.object_base + serial) % 100_000_000:08d}"
        coordinates = self._coordinates(cx, cy, False)
        sequence = rng.choice(
            (
                ("SECTION_58_CREATED",),
                ("SECTION_58_CREATED", "SECTION_58_IN_FORCE"),
                ("SECTION_58_IN_FORCE",),
                ("SECTION_58_CLOSED",),
                ("SECTION_58_CANCELLED",),
            )
        )
        times = self._times(len(sequence))
        start_day = clock.local_day(times[0] / 1000) + rng.randint(0, 10)
        start_date, _ = clock.day_bounds(start_day)
        end_date, _ = clock.day_bounds(start_day + 182)
        location = ", ".join(sorted(rng.sample(LOCATION_TYPES, rng.choice((1, 2)))))
        area = rng.choice(AREAS)
        for event_type, when in zip(sequence, times):
            data = {
                "section_58_reference_number": reference,
                "section_58_coordinates": coordinates,
                "section_58_status": S58_STATUS[event_type],
                "start_date": start_date,
                "end_date": end_date,
                "section_58_duration": S58_DURATION,
                "section_58_extent": S58_EXTENT,
                "section_58_location_type": location,
                "status_change_date": clock.iso(when),
                "highway_authority_swa_code": swa,
                "highway_authority": ha_name,
                "usrn": usrn,
                "street_name": street,
                "area_name": area,
                "town": town,
            }
            self._extra(data)
            yield self._envelope(event_type, data, when, reference)

    def events(self) -> Iterator[dict]:
        """The archive's events in member order (``events`` of them, plus ``revision``'s additions)."""
        make = {"permit": self.permit_events, "activity": self.activity_events, "section_58": self.section_58_events}[
            self.spec.type
        ]
        total = self.spec.total
        serial = 0
        while self.emitted < total:
            for event in make(serial):
                if self.emitted >= total:
                    break
                if self.spec.revision and self.emitted % 25 == self.spec.revision % 25:
                    _late_edit(event, self.spec.type, self.spec.revision)
                yield event
                self.emitted += 1
            serial += 1


def _late_edit(event: dict, kind: str, revision: int) -> None:
    """A republished month corrects a few events in place (same event reference, new content)."""
    data = event["object_data"]
    if kind == "permit":
        data["traffic_management_type_ref"], data["traffic_management_type"] = TRAFFIC_MANAGEMENT[revision % 11]
    else:
        data["street_name"] = f"{data['street_name']} (CORRECTED {revision})"


# ---------------------------------------------------------------- members and the zip


def _bad_member(kind: int, event: dict) -> bytes:
    """Contract-breaking variants of an event (for the extractor's quarantine)."""
    if kind == 0:
        return orjson.dumps(event)[:-40]  # cut mid-document: not JSON
    if kind == 1:
        return orjson.dumps([event])  # JSON, not an object
    if kind == 2:
        event = {
            **event,
            "object_data": {k: v for k, v in event["object_data"].items() if not k.endswith("_reference_number")},
        }
        return orjson.dumps(event)  # the object's reference number is gone
    if kind == 3:
        return orjson.dumps({**event, "event_time": "31/13/2024 25:61"})  # unreadable event_time
    return orjson.dumps({**event, "event_reference": event["event_reference"] - 1})  # a repeated reference


def _fault_event(event: dict, spec: ArchiveSpec) -> None:
    """The event as the faulted archive publishes it (drop_field, new_field, retype_field)."""
    data = event["object_data"]
    if "drop_field" in spec.faults:
        name = spec.option("drop_field") or REFERENCE_FIELDS[spec.type]
        (event if name in ENVELOPE_FIELDS else data).pop(name, None)
    if "new_field" in spec.faults:
        data[spec.option("new_field")] = "a field the contract lacks"
    if "retype_field" in spec.faults:
        name = spec.option("retype_field")
        holder = event if name in ENVELOPE_FIELDS else data
        value = holder.get(name)
        if isinstance(value, str) and value.isdigit():
            holder[name] = int(value)  # "34409447" -> 34409447
        elif isinstance(value, int) and not isinstance(value, bool):
            holder[name] = str(value)  # a number as text
        elif isinstance(value, str):
            holder[name] = {"value": value}  # text as an object


def _malformed_member(kind: int, event: dict, reference: int) -> tuple[str, bytes]:
    """malformed_row's extra members: no natural key, an unreadable event_time, not JSON."""
    stem = f"{event['object_reference']}_{reference}"
    if kind == 0:
        return f"{stem}_no_key.json", orjson.dumps({k: v for k, v in event.items() if k != "event_reference"})
    if kind == 1:
        return f"{stem}_bad_time.json", orjson.dumps(
            {**event, "event_reference": reference, "event_time": "31/13/2024 25:61"}
        )
    return f"{stem}_not_json.json", orjson.dumps({**event, "event_reference": reference})[:-40]


def iter_members(spec: ArchiveSpec) -> Iterator[tuple[str, bytes, int]]:
    """``(name, json bytes, event_time epoch seconds)`` per member, in archive order."""
    maker = _EventMaker(spec)
    q = spec.quirks
    total = spec.total
    bad_at = {}
    if q.bad_members and total:
        step = max(1, total // (q.bad_members + 1))
        bad_at = {min(total - 1, max(1, step * (i + 1))): i % 5 for i in range(q.bad_members)}
    pretty = q.pretty_rate
    rng = random.Random(seed_for(SALT, spec.seed, spec.type, spec.month, "format"))
    malformed: dict[int, list[int]] = {}  # event index -> the broken members that follow it
    if "malformed_row" in spec.faults and total:
        for k in range(3):
            malformed.setdefault(min(total - 1, total * (k + 1) // 4), []).append(k)
    for index, event in enumerate(maker.events()):
        name = f"{event['object_reference']}_{event['event_reference']}.json"
        when = _iso_epoch(event["event_time"])
        original = orjson.loads(orjson.dumps(event)) if index in malformed else None
        if spec.faults:
            _fault_event(event, spec)
        if index in bad_at:
            yield name, _bad_member(bad_at[index], event), when
        elif pretty and rng.random() < pretty:
            yield name, orjson.dumps(event, option=orjson.OPT_INDENT_2), when
        else:
            yield name, orjson.dumps(event), when
        for k in malformed.get(index, ()):
            yield (*_malformed_member(k, original, maker.ref_base + total + k), when)


def _iso_epoch(text: str) -> int:
    return calendar.timegm(
        (int(text[0:4]), int(text[5:7]), int(text[8:10]), int(text[11:13]), int(text[14:16]), int(text[17:19]))
    )


def _dos_time(epoch: int) -> tuple[int, int]:
    t = _dt.datetime.fromtimestamp(epoch, _dt.UTC)
    return (
        (t.hour << 11) | (t.minute << 5) | (t.second // 2),
        ((max(t.year, 1980) - 1980) << 9) | (t.month << 5) | t.day,
    )


_LOCAL = struct.Struct("<IHHHHHIIIHH")
_CENTRAL = struct.Struct("<IHHHHHHIIIHHHHHII")
_DESCRIPTOR = struct.Struct("<IIII")
_EOCD = struct.Struct("<IHHHHIIH")


def iter_archive(spec: ArchiveSpec, piece_size: int = _PIECE) -> Iterator[bytes]:
    """The archive's bytes as pieces of about ``piece_size`` (never the whole archive at once)."""
    level = 6
    descriptors = spec.quirks.data_descriptors
    flags = 0x0808 if descriptors else 0x0800  # UTF-8 names (+ data descriptor)
    central = tempfile.SpooledTemporaryFile(max_size=16 << 20)
    entries = 0
    offset = 0
    out: list[bytes] = []
    out_size = 0
    total = spec.total
    cut_after = None
    if spec.truncate or "truncate_archive" in spec.faults:
        cut_after = max(0, int(total * 0.6))  # stop inside this member
    corrupt_at = total // 2 if "corrupt_archive" in spec.faults and total else None
    corrupt_mode = spec.option("corrupt")
    try:
        for name, body, when in iter_members(spec):
            raw_name = name.encode()
            dtime, ddate = _dos_time(when)
            crc = zlib.crc32(body)
            data = zlib.compress(body, level, wbits=-15)
            if entries == corrupt_at and corrupt_mode == "member":
                # Bytes damaged at rest or in transit: the headers keep the true CRC and sizes.
                at = len(data) // 3
                garbage = bytes((i * 73 + 41) & 0xFF for i in range(min(16, len(data) - at)))
                data = data[:at] + garbage + data[at + len(garbage) :]
            if descriptors:
                header = _LOCAL.pack(0x04034B50, 20, flags, 8, dtime, ddate, 0, 0, 0, len(raw_name), 0)
                record = header + raw_name + data + _DESCRIPTOR.pack(0x08074B50, crc, len(data), len(body))
            else:
                header = _LOCAL.pack(
                    0x04034B50, 20, flags, 8, dtime, ddate, crc, len(data), len(body), len(raw_name), 0
                )
                record = header + raw_name + data
            if cut_after is not None and entries == cut_after:
                out.append(record[: len(header) + len(raw_name) + len(data) // 2])
                yield b"".join(out)
                return
            out.append(record)
            out_size += len(record)
            extra = b""
            local_offset = offset
            if spec.central_directory == "valid" and offset >= 0xFFFFFFFF:
                extra = struct.pack("<HHQ", 0x0001, 8, offset)
                local_offset = 0xFFFFFFFF
            central.write(
                _CENTRAL.pack(
                    0x02014B50,
                    0x031E,
                    20,
                    flags,
                    8,
                    dtime,
                    ddate,
                    crc,
                    len(data),
                    len(body),
                    len(raw_name),
                    len(extra),
                    0,
                    0,
                    0,
                    0o100644 << 16,
                    local_offset,
                )
            )
            central.write(raw_name)
            central.write(extra)
            offset += len(record)
            if entries == corrupt_at and corrupt_mode == "between":
                garbage = bytes((i * 151 + 7) & 0xFF for i in range(64))  # neither a member nor the directory
                out.append(garbage)
                out_size += len(garbage)
                offset += len(garbage)
            entries += 1
            if out_size >= piece_size:
                yield b"".join(out)
                out, out_size = [], 0
        if cut_after is not None:  # fewer members than the cut: cut the directory off instead
            yield b"".join(out)
            return
        if out:
            yield b"".join(out)
            out = []
        cd_size = central.tell()
        central.seek(0)
        while True:
            piece = central.read(piece_size)
            if not piece:
                break
            yield piece
        yield _end_records(spec, entries, cd_size, offset)
    finally:
        central.close()


def _end_records(spec: ArchiveSpec, entries: int, cd_size: int, cd_offset: int) -> bytes:
    if spec.central_directory == "corrupt":
        # DfT's defect: size and offset computed as if each entry were 46 bytes (names left out),
        # the count modulo 65,536, no ZIP64 record.
        wrong_size = (46 * entries) & 0xFFFFFFFF
        wrong_offset = min(cd_offset + (cd_size - wrong_size) // 2, 0xFFFFFFFF) if entries else cd_offset
        return _EOCD.pack(
            0x06054B50, 0, 0, entries & 0xFFFF, entries & 0xFFFF, wrong_size, wrong_offset & 0xFFFFFFFF, 0
        )
    if entries < 0xFFFF and cd_offset < 0xFFFFFFFF and cd_size < 0xFFFFFFFF:
        return _EOCD.pack(0x06054B50, 0, 0, entries, entries, cd_size, cd_offset, 0)
    zip64_offset = cd_offset + cd_size
    zip64 = struct.pack("<IQHHIIQQQQ", 0x06064B50, 44, 45, 45, 0, 0, entries, entries, cd_size, cd_offset)
    locator = struct.pack("<IIQI", 0x07064B50, 0, zip64_offset, 1)
    return zip64 + locator + _EOCD.pack(0x06054B50, 0, 0, 0xFFFF, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0)


def build_archive(spec: ArchiveSpec) -> bytes:
    """The whole archive in memory (small archives: tests)."""
    return b"".join(iter_archive(spec))


def archive_events(spec: ArchiveSpec) -> Iterator[dict]:
    """The events the archive carries (before member corruption): what an extractor must land."""
    return _EventMaker(spec).events()
