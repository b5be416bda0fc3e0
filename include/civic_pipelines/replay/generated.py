"""SODA datasets the replay server generates from a dataset file alone (its ``[replay]`` table).

A city added by configuration (``adapter = "socrata"``) gets a replay endpoint with no Python:
the generator reads the dataset's fields (wire names, types) from ``[adapter]`` and how to draw
plausible values from ``[replay]``::

    [replay]
    rows_per_month = 2000          # about: each month varies by up to +-10 %, deterministically
    months = ["2010-01"]           # what the dataset covers: from the first month through today's
                                   # (a live dataset); ["2010-01", "2019-12"] fixes the last month
    rows_updated_at = 1767225600   # the first watermark (epoch seconds)
    seed = 311
    late_edit = { set = { status = "Closed" }, redraw = ["closed_date"] }

    [replay.fields]                 # by lake name; a field with no entry is never published
    unique_key = { sequence = 45000000 }                 # increasing integers
    sr_number = { sequence = 1, format = "SR{:08d}" }    # ... written into a text key (str.format)
    created_date = { within = "month" }                  # the block's date field
    closed_date = { after = "created_date", hours = [0.5, 720], null_share = 0.1 }
    status = { values = ["Closed", "Open"], weights = [9, 1] }
    latitude = { range = [40.5, 40.9], decimals = 6, null_share = 0.02 }
    agency = { table = "complaints" }                     # drawn together with its table's other columns

    [replay.tables.complaints]      # columns drawn together (an agency and its complaint types)
    columns = ["agency", "complaint_type"]
    rows = [["NYPD", "Noise - Residential"], ["DSNY", "Dirty Condition"]]
    weights = [3, 1]

Values are rendered as SODA 2.0 JSON does: every value a string, nulls omitted, floating
timestamps as ``YYYY-MM-DDTHH:MM:SS.000``. Rows are deterministic per (seed, month).
"""

from __future__ import annotations

import random
import threading
import tomllib
from datetime import UTC, datetime, timedelta
from pathlib import Path

from civic_pipelines.months import month_range
from civic_pipelines.replay import horizon
from civic_pipelines.replay.seeds import seed_for
from civic_pipelines.replay.soda import SodaSource, months_touched

_SALT = 0x5EED_50DA
_KINDS = {"sequence", "within", "after", "values", "range", "table"}


def _read_config(path: Path) -> dict:
    with open(path, "rb") as handle:
        return tomllib.load(handle)


def _floating(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.000")


class GeneratedSodaDataset:
    """Rows for one dataset file, month by month, plus the late-edit switch."""

    def __init__(self, path: Path) -> None:
        config = _read_config(path)
        self.path = path
        self.name = config["source"]["name"]
        self.title = config["source"].get("title", self.name)
        adapter = config["adapter"]
        replay = config.get("replay")
        if not replay:
            raise ValueError(f"{path.name}: no [replay] table to generate rows from")
        self.dataset_id = adapter["dataset_id"]
        if adapter.get("variants"):
            raise ValueError(f"{path.name}: generated replay serves single-variant datasets only")
        from civic_pipelines.adapters.socrata import SODA_TYPES

        self.wire = {f["name"]: f["source"] for f in adapter["fields"]}
        self.types = {f["name"]: f["type"] for f in adapter["fields"]}
        self.soda_types = {name: SODA_TYPES[kind] for name, kind in self.types.items()}
        self.date_field = adapter["date_field"]
        self.key = adapter["key"]
        self.generators = dict(replay.get("fields") or {})
        for name, generator in self.generators.items():
            if name not in self.wire:
                raise ValueError(f"{path.name}: [replay.fields] {name} is not among [adapter] fields")
            kinds = _KINDS & set(generator)
            if len(kinds) != 1:
                raise ValueError(f"{path.name}: [replay.fields] {name} needs exactly one of {sorted(_KINDS)}")
        if self.generators.get(self.date_field, {}).get("within") != "month":
            raise ValueError(f'{path.name}: [replay.fields] {self.date_field} must be {{ within = "month" }}')
        if "sequence" not in self.generators.get(self.key, {}):
            raise ValueError(f"{path.name}: [replay.fields] {self.key} must be {{ sequence = <first> }}")
        self.tables = replay.get("tables") or {}
        for table_name, table in self.tables.items():
            if any(len(row) != len(table["columns"]) for row in table["rows"]):
                raise ValueError(
                    f"{path.name}: [replay.tables.{table_name}] every row needs {len(table['columns'])} values"
                )
        # Generation order: a field drawn "after" another comes after it.
        self.order = sorted(self.generators, key=lambda n: self._depth(n))
        months = replay.get("months", [adapter.get("first_month") or config["source"]["first_month"]])
        if not 1 <= len(months) <= 2:
            raise ValueError(f"{path.name}: [replay] months is [first] or [first, last]")
        self.first_month = months[0]
        # No last month: the dataset is live, so the served range rolls with the clock (horizon.py).
        self._fixed_last_month = months[1] if len(months) == 2 else None
        self.base_rows = int(replay.get("rows_per_month", 1000))
        self.seed = int(replay.get("seed", 0))
        self.late_edit = replay.get("late_edit") or {}
        self._initial_rows_updated_at = int(replay.get("rows_updated_at", 1767225600))
        self._lock = threading.RLock()
        self.reset()

    def _depth(self, name: str, seen: tuple = ()) -> int:
        after = self.generators[name].get("after")
        if after is None:
            return 0
        if after in seen or after not in self.generators:
            raise ValueError(
                f"{self.path.name}: [replay.fields] {name} is after {after!r}, which is not generated first"
            )
        return 1 + self._depth(after, seen + (name,))

    def reset(self) -> None:
        with self._lock:
            self.rows_per_month: int | None = None
            self.rows_updated_at = self._initial_rows_updated_at
            self.version = 0
            self._rows: dict[str, list[tuple[dict, dict]]] = {}
            self._edit_counts: dict[str, int] = {}

    # ------------------------------------------------------------ metadata

    def columns(self) -> list[dict]:
        return [
            {"fieldName": self.wire[name], "name": self.wire[name], "dataTypeName": self.soda_types[name]}
            for name in self.wire
            if name in self.generators
        ]

    @property
    def last_month(self) -> str:
        """The last month served: the configured one, or today's month (a rolling horizon)."""
        return self._fixed_last_month or horizon.last_month(self.first_month)

    def months(self) -> list[str]:
        return month_range(self.first_month, self.last_month)

    def month_count(self, month: str) -> int:
        if self.rows_per_month is not None:
            return self.rows_per_month
        rng = random.Random(seed_for(_SALT, self.seed, self.name, "count", month))
        return max(1, round(self.base_rows * rng.uniform(0.9, 1.1)))

    # ------------------------------------------------------------ rows

    def records(self, month: str) -> list[tuple[dict, dict]]:
        """``(wire row, system fields)`` pairs of the month, cached; do not mutate."""
        with self._lock:
            rows = self._rows.get(month)
            if rows is None:
                rows = self._rows[month] = self._generate(month)
            return rows

    def rows_for_month(self, month: str) -> list[dict]:
        return [row for row, _system in self.records(month)]

    def _key_start(self, month: str) -> int:
        """Keys increase with the month and never collide: a month owns a range twice the base size."""
        months = self.months()
        index = months.index(month) if month in months else 0
        return int(self.generators[self.key]["sequence"]) + index * max(self.base_rows, self.rows_per_month or 0) * 2

    def _generate(self, month: str) -> list[tuple[dict, dict]]:
        rng = random.Random(seed_for(_SALT, self.seed, self.name, "rows", month))
        start = datetime(int(month[:4]), int(month[5:7]), 1)
        end = datetime(start.year + start.month // 12, start.month % 12 + 1, 1)
        span = int((end - start).total_seconds())
        n = self.month_count(month)
        first_key = self._key_start(month)
        created = sorted(rng.randrange(span) for _ in range(n))
        records = []
        for i in range(n):
            values: dict = {}
            drawn_tables: dict = {}
            for name in self.order:
                values[name] = self._draw(
                    name, rng, values, drawn_tables, first_key + i, start + timedelta(seconds=created[i])
                )
            records.append(self._render(values, i, month))
        return records

    def _draw(
        self,
        name: str,
        rng: random.Random,
        values: dict,
        drawn_tables: dict,
        key: int,
        moment: datetime,
        force: bool = False,
    ):
        spec = self.generators[name]
        if not force and rng.random() < float(spec.get("null_share", 0)):
            return None
        if "sequence" in spec:
            return spec["format"].format(key) if "format" in spec else key
        if "within" in spec:
            return moment
        if "after" in spec:
            base = values.get(spec["after"])
            if base is None:
                return None
            low, high = spec.get("hours", [0, 24])
            return base + timedelta(seconds=round(rng.uniform(low, high) * 3600))
        if "values" in spec:
            return rng.choices(spec["values"], weights=spec.get("weights"))[0]
        if "range" in spec:
            low, high = spec["range"]
            decimals = int(spec.get("decimals", 0))
            value = round(rng.uniform(low, high), decimals)
            return int(value) if decimals == 0 else value
        table_name = spec["table"]
        if table_name not in drawn_tables:
            table = self.tables[table_name]
            row = rng.choices(table["rows"], weights=table.get("weights"))[0]
            drawn_tables[table_name] = dict(zip(table["columns"], row))
        return drawn_tables[table_name].get(name)

    def _render(self, values: dict, index: int, month: str) -> tuple[dict, dict]:
        row = {}
        for name, value in values.items():
            if value is None or value == "":
                continue
            row[self.wire[name]] = _floating(value) if isinstance(value, datetime) else str(value)
        system = {
            ":id": f"row-{seed_for(_SALT, self.name, month, index) & 0xFFFFFFFFFFFF:012x}",
            ":created_at": _floating(values[self.date_field]) + "Z",
            ":updated_at": _floating(values[self.date_field]) + "Z",
        }
        return row, system

    def apply_late_edits(self, month: str, n: int) -> list[str]:
        """Edit ``n`` rows of the month as ``[replay] late_edit`` says (set fixed values, redraw
        fields), keep their keys, and move ``rowsUpdatedAt`` on by an hour."""
        n = int(n)
        if n < 0:
            raise ValueError("n must be >= 0")
        if not self.late_edit:
            raise ValueError(f"{self.path.name}: [replay] has no late_edit")
        with self._lock:
            records = list(self.records(month))
            count = self._edit_counts.get(month, 0)
            self._edit_counts[month] = count + 1
            rng = random.Random(seed_for(_SALT, self.seed, self.name, "edit", month, count))
            fixed = self.late_edit.get("set") or {}
            # Prefer rows the edit changes (e.g. still open when the edit closes them).
            changeable = [
                i
                for i, (row, _) in enumerate(records)
                if any(row.get(self.wire[f]) != str(v) for f, v in fixed.items())
            ] or list(range(len(records)))
            chosen = sorted(rng.sample(changeable, min(n, len(changeable))))
            self.rows_updated_at += 3600
            edited = []
            for i in chosen:
                row, system = records[i]
                row = dict(row)
                for name, value in fixed.items():
                    row[self.wire[name]] = str(value)
                parsed = {name: self._parse(name, row.get(self.wire[name])) for name in self.generators}
                for name in self.late_edit.get("redraw") or []:
                    parsed[name] = self._draw(name, rng, parsed, {}, 0, parsed[self.date_field], force=True)
                    if isinstance(parsed[name], datetime):
                        row[self.wire[name]] = _floating(parsed[name])
                    elif parsed[name] is not None:
                        row[self.wire[name]] = str(parsed[name])
                system = {
                    **system,
                    ":updated_at": datetime.fromtimestamp(self.rows_updated_at, UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z"),
                }
                records[i] = (row, system)
                edited.append(row[self.wire[self.key]])
            self._rows[month] = records
            self.version += 1
            return edited

    def _parse(self, name: str, text: str | None):
        if text is None:
            return None
        if self.types[name] == "timestamp":
            return datetime.strptime(text[:19], "%Y-%m-%dT%H:%M:%S")
        return text


class GeneratedSodaSource(SodaSource):
    """Adapts a :class:`GeneratedSodaDataset` to :class:`~civic_pipelines.replay.soda.SodaApi`."""

    edited_key = "keys"

    def __init__(self, dataset: GeneratedSodaDataset) -> None:
        super().__init__(dataset, dataset.title)
        self.name = dataset.name

    @property
    def version(self):
        return (id(self.dataset), self.dataset.version, self.dataset.rows_per_month)

    def all_months(self) -> list[str]:
        return self.dataset.months()

    def partition_field(self) -> str:
        return self.dataset.wire[self.dataset.date_field]

    def months_in(self, low: str | None, low_strict: bool, high: str | None, high_strict: bool) -> list[str]:
        """Months a date-field interval touches, clipped to the dataset's range."""
        return months_touched(self.dataset.first_month, self.dataset.last_month, low, high, high_strict)

    def records(self, month: str) -> list[tuple[dict, dict]]:
        return self.dataset.records(month)

    def malformed_rows(self, page: list[dict]) -> list[dict]:
        """Two rows that break the contract: one without the key, one whose date is ``not-a-date``."""
        key = self.dataset.wire[self.dataset.key]
        date = self.partition_field()
        missing_key = dict(page[0])
        missing_key.pop(key, None)
        bad_date = dict(page[1 % len(page)])
        bad_date[date] = "not-a-date"
        bad_date[key] = "990000000001"
        return [missing_key, bad_date]

    def duplicate_row(self, row: dict) -> dict:
        """The row again, its date one hour later when that stays inside the month."""
        date = self.partition_field()
        duplicate = dict(row)
        value = row.get(date)
        if value:
            later = _floating(datetime.strptime(value[:19], "%Y-%m-%dT%H:%M:%S") + timedelta(hours=1))
            if later[:7] == value[:7]:
                duplicate[date] = later
        return duplicate

    def configure_dataset(self, config: dict) -> None:
        if "rows_per_month" in config:
            value = config["rows_per_month"]
            with self.dataset._lock:
                self.dataset.rows_per_month = None if value is None else int(value)
                self.dataset._rows.clear()
                self.dataset.version += 1

    def describe(self) -> dict:
        return {**super().describe(), "base_rows_per_month": self.dataset.base_rows}

    def reset_data(self) -> None:
        self.dataset.reset()
        self.months = None


def generated_sources() -> list[GeneratedSodaSource]:
    """One source per dataset file with ``adapter = "socrata"`` and a ``[replay]`` table."""
    from civic_pipelines.adapters import dataset_files

    found = []
    for path in dataset_files().values():
        config = _read_config(path)
        if config.get("source", {}).get("adapter") == "socrata" and config.get("replay"):
            found.append(GeneratedSodaSource(GeneratedSodaDataset(path)))
    return found
