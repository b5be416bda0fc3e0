"""SRWR's record-type decoder: named typed columns per record type, zero-padded codes, reasons for
malformed records and values, quoted line breaks, and the watermark fallback."""

from __future__ import annotations

from collections import Counter
from datetime import date, datetime

import pytest
from test_srwr import pieces

from civic_pipelines.sources import srwr

# ---------------------------------------------------------------- decoding


def test_record_types_decode_to_named_typed_columns():
    padded = Counter()
    cases = {
        "001": ("1,001,A1,,,4420,,,,,,2,,", {"promoter_id": "4420", "latest_phase": 2}),
        "007": (
            '2,007,A1,,,,"Leith Walk, Edinburgh",2,,1,5,,POINT (1 2),,',
            {
                "location_text": "Leith Walk, Edinburgh",
                "phase_number": 2,
                "work_category_code": "01",
                "status_code": "05",
                "coordinates": "POINT (1 2)",
            },
        ),
        "008": (
            "3,008,A1,2,14/03/2024,,0930,,2024-03-20 17:45,,,,,,,,,,,,6,Y",
            {
                "phase_number": 2,
                "start_date": "14/03/2024",
                "start_time": "0930",
                "end_date": "2024-03-20 17:45",
                "end_time": None,
                "traffic_management_type_code": "06",
                "footway": "Y",
                "start_at": datetime(2024, 3, 14, 9, 30),
                "end_at": datetime(2024, 3, 20, 17, 45),
            },
        ),
        "010": ("4,010,A1,,,,,,,1", {"location_code": "01"}),
        "099": (
            "5,099,A1,9055,03,City of Edinburgh Council",
            {"district_key_1": "9055", "district_key_2": "03", "organisation_name": "City of Edinburgh Council"},
        ),
    }
    for record_type, (text, want) in cases.items():
        record = srwr.decode(text)
        assert (record.error, record.record_type, record.activity_id) == (None, record_type, "A1")
        values, reason = srwr.decode_row(record, padded)
        assert reason is None and values == want, record_type
    assert padded == {
        "phase.work_category_code": 1,
        "phase.status_code": 1,
        "undertaker_phase.traffic_management_type_code": 1,
        "site.location_code": 1,
    }
    assert srwr.SCHEMAS["undertaker_phase"].field("start_at").type == srwr.TIMESTAMP_TYPE
    assert srwr.SCHEMAS["phase"].field("phase_number").type == srwr.ARROW["int"]


@pytest.mark.parametrize(
    "raw, want",
    [("6", "06"), ("06", "06"), ("0", "00"), (" 7 ", "07"), ("41", "41"), ("", None), ("123", "123"), ("A", "A")],
)
def test_one_digit_codes_are_zero_padded(raw, want):
    assert srwr.normalise_code(raw)[0] == want


@pytest.mark.parametrize(
    "text, reason",
    [
        ("1,007", "2 field(s): a record needs at least 3"),
        ("1,007,,x", "missing activity id"),
        ("1,007,A1,,,,loc,1", "record type 007 needs at least 13 fields, got 8"),
        ('1,007,A1,"a"b,c', "malformed CSV"),
    ],
)
def test_malformed_records_have_a_reason(text, reason):
    assert srwr.decode(text).error.startswith(reason)


def test_a_broken_line_keeps_its_activity_when_it_can():
    record = srwr.decode('1,007,A1,"a"b,c')
    assert (record.record_type, record.activity_id) == ("007", "A1")
    record = srwr.broken('1,007,A1,"never closed', "unterminated quoted field")
    assert (record.record_type, record.activity_id, record.error) == ("007", "A1", "unterminated quoted field")
    assert srwr.broken('1,"0,07",A1', "x").activity_id is None


@pytest.mark.parametrize(
    "text, reason",
    [
        ("3,008,A1,1,,,08:00,,,,,,,,,,,,,,6,N", "missing start_date"),
        ("3,008,A1,1,2024-02-30,,08:00,,,,,,,,,,,,,,6,N", "unparseable start_date/start_time '2024-02-30' '08:00'"),
        ("3,008,A1,1,2024-02-03,,25:00,,,,,,,,,,,,,,6,N", "unparseable start_date/start_time"),
        ("3,008,A1,1,2024-02-03,,08:00,,soon,,,,,,,,,,,,6,N", "unparseable end_date/end_time 'soon'"),
        ("3,008,A1,x,2024-02-03,,08:00,,,,,,,,,,,,,,6,N", "unparseable phase_number 'x'"),
    ],
)
def test_unparseable_values_are_reasons(text, reason):
    values, got = srwr.decode_row(srwr.decode(text), Counter())
    assert values is None and got.startswith(reason)


def test_records_split_lines_and_keep_quoted_line_breaks():
    data = (
        b'1,001,A,x\r\n2,007,A,"two\r\nlines, one field",y\r\n\r\n3,099,A,"say ""hi"""\n'
        b'4,555,A\n5,007,B,"never closed\n'
    )
    for size in (1, 3, 7, 1 << 20):
        got = list(srwr.records(pieces(data, size)))
        assert got == [
            ("1,001,A,x", None),
            ('2,007,A,"two\r\nlines, one field",y', None),
            ('3,099,A,"say ""hi"""', None),
            ("4,555,A", None),
            ('5,007,B,"never closed', "unterminated quoted field"),
        ], size
    assert srwr.split_record('2,007,A,"two\r\nlines, one field",y') == ["2", "007", "A", "two\r\nlines, one field", "y"]


def test_watermark_falls_back_to_the_download_date_without_validators():
    today = date(2026, 11, 23)
    assert (
        srwr.watermark_of("2023", {"ETag": '"e"', "Last-Modified": "Mon"}, 10, today)
        == '2023|etag="e"|last-modified=Mon|length=10'
    )
    assert srwr.watermark_of("MAR", {}, 10, today) == "MAR|length=10|fetched=2026-11-23"
