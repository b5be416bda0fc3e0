"""The CKAN adapter's CSV reader on quirks the replay's Toronto files do not make: quoted commas, a
BOM, padded values, fractional seconds, latin-1, rows of other years, identical rows, a required
column gone and renamed columns. The replay-backed Toronto tests are in ``test_toronto_311.py``.
"""

from __future__ import annotations

import re
from datetime import datetime

import pytest
from test_toronto_311 import EXTRA_FIELD, OUTSIDE, read, source  # noqa: F401 - source is a fixture

from civic_pipelines.replay.toronto import HEADER
from civic_pipelines.sources.base import SchemaDriftError

QUIRKY = (
    "Creation Date ,Status,First 3 Chars of Postal Code,Intersection Street 1,Intersection Street 2,Ward,"
    "Service Request Type,Division,Section\r\n"
    "2024-01-31 23:59:59.9999999,Closed,M4C,,,Beaches-East York (19),Noise,MLS,District\r\n"
    '2024-02-03 04:05:06.1234567,Completed  ,M4C ,,,Beaches-East York (19) ,"Sidewalk Icy, Needs Salt",TS,Road\r\n'
    "2024-02-03 05:00:00.0000000,Completed,Intersection,Caf\xe9 St,Queen St E,Toronto-Danforth (14),Pot hole,TS,Road\r\n"
    "2024-02-04 06:00:00.0000000,Completed,,,,Toronto-Danforth (14),Pot hole,TS,Road\r\n"
    "2024-02-04 07:00:00.0000000,Completed,M4K,,,   ,Pot hole,TS,Road\r\n"
    "2024-02-04 08:00:00.0000000,Completed,M4K,,,Toronto-Danforth (14),Sidewalk Icy, Needs Salt,TS,Road\r\n"
    "2024-02-30 09:00:00.0000000,Completed,M4K,,,Toronto-Danforth (14),Pot hole,TS,Road\r\n"
    "2024-03-01 00:00:00.0000000,Completed,M4K,,,Toronto-Danforth (14),Pot hole,TS,Road\r\n"
    "2024-03-01 00:00:01,Completed,M4K,,,Toronto-Danforth (14),Pot hole,TS,Road\r\n"
)


@pytest.mark.parametrize("bom", [False, True])
def test_csv_quirks_quoted_commas_bom_spaces_fractions_encodings(source, bom):
    text = QUIRKY
    data = (b"\xef\xbb\xbf" + text.encode("utf-8")) if bom else text.encode("latin-1")
    block = read(source, data)
    rows = {r["created_at"]: r for r in block.data.to_pylist()}
    # the rows without a postal prefix / with a blank Ward are requests without a location: they land
    assert sorted(rows) == [
        datetime(2024, 2, 3, 4, 5, 6, 123456),
        datetime(2024, 2, 3, 5, 0),
        datetime(2024, 2, 4, 6, 0),
        datetime(2024, 2, 4, 7, 0),
    ]
    assert rows[datetime(2024, 2, 4, 6, 0)]["postal_prefix"] is None
    assert rows[datetime(2024, 2, 4, 7, 0)]["ward"] is None and rows[datetime(2024, 2, 4, 7, 0)]["ward_number"] is None
    assert block.stats["empty_values"] == {"postal_prefix": 1, "ward": 1}
    quoted = rows[datetime(2024, 2, 3, 4, 5, 6, 123456)]
    assert quoted["service_request_type"] == "Sidewalk Icy, Needs Salt" and quoted["status"] == "Completed"
    assert (
        quoted["postal_prefix"] == "M4C" and quoted["ward"] == "Beaches-East York (19)" and quoted["ward_number"] == 19
    )
    assert rows[datetime(2024, 2, 3, 5, 0)]["intersection_street_1"] == "Café St"
    assert block.stats["encoding"] == ("utf-8 (BOM)" if bom else "latin-1")
    assert block.stats["drift"] == {"new_fields": [], "missing_fields": []}  # "Creation Date " is trimmed
    assert block.stats["quarantine_reasons"] == {EXTRA_FIELD: 1, "unparseable created_at": 1}
    assert block.stats["file_rows"] == 8 and block.stats["file_malformed_lines"] == 1


def test_rows_of_other_years_and_undated_rows_are_placed_and_quarantined(source):
    header = ",".join(HEADER) + "\r\n"
    row = ",Closed,M4C,,,Beaches-East York (19),Noise,MLS,District\r\n"
    dates = [
        "2023-12-31 23:59:00.0000000",
        "2024-01-05 10:00:00.0000000",
        "2024-05-05 10:00:00.0000000",
        "garbage",
        "2024-06-05 10:00:00.0000000",
        "2025-01-01 00:00:01.0000000",
    ]
    data = (header + "".join(date + row for date in dates)).encode("latin-1")
    placed = {month: read(source, data, month) for month in ("2024-01", "2024-05", "2024-06", "2024-12")}
    assert placed["2024-01"].stats["quarantine_reasons"] == {OUTSIDE.format(year=2024): 1}
    assert placed["2024-01"].data.num_rows == 1
    assert placed["2024-05"].stats["quarantine_reasons"] == {"unparseable created_at": 1}  # after a May row
    assert placed["2024-06"].stats["quarantine_reasons"] == {}
    assert placed["2024-12"].stats["quarantine_reasons"] == {OUTSIDE.format(year=2024): 1}
    assert placed["2024-12"].data.num_rows == 0 and placed["2024-12"].data.schema.equals(source.data_schema)


def test_identical_rows_get_distinct_stable_keys(source):
    header = ",".join(HEADER) + "\r\n"
    row = "2024-02-05 10:00:00.0000000,Closed,M4C,,,Beaches-East York (19),Noise,MLS,District\r\n"
    edited = row.replace("Closed", "Cancelled")
    first = read(source, (header + row + row).encode())
    second = read(source, (header + row + edited).encode())
    assert first.stats["identical_rows"] == 1
    keys = first.data["request_id"].to_pylist()
    assert len(set(keys)) == 2 and set(second.data["request_id"].to_pylist()) == set(keys)
    assert all(re.fullmatch(r"[0-9a-f]{16}", key) for key in keys)


def test_a_required_column_gone_fails_and_renames_are_drift(source):
    header = [h for h in HEADER if h != "Ward"]
    body = ",".join(header) + "\r\n" + "2024-02-05 10:00:00.0000000,Closed,M4C,,,Noise,MLS,District\r\n"
    with pytest.raises(SchemaDriftError, match="Ward"):
        read(source, body.encode())
    renamed = ["Service Request Status" if h == "Status" else h for h in HEADER] + ["Location"]
    body = ",".join(renamed) + "\r\n" + "2024-02-05 10:00:00.0000000,Closed,M4C,,,Willowdale (18),Noise,MLS,Sec,X\r\n"
    block = read(source, body.encode())
    assert block.data["status"].to_pylist() == ["Closed"]
    assert block.stats["drift"] == {
        "new_fields": ["Location"],
        "missing_fields": [],
        "renamed": {"Status": "Service Request Status"},
    }
