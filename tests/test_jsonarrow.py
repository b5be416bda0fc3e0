"""JsonPage keeps only its rewritten text; the exact path (orjson) still sees the page's content."""

from __future__ import annotations

import orjson

from civic_pipelines.jsonarrow import JsonPage

ROWS = [
    {"id": "1", "text": "plain"},
    {"id": "2", "text": "a },{ inside a value", "extra": "x"},  # defeats the NDJSON split
    {"id": "3"},
]


def test_compact_page_with_the_separator_inside_a_value_falls_back_to_the_exact_values():
    body = orjson.dumps(ROWS)
    page = JsonPage(body)
    assert page.size == len(body)
    assert orjson.loads(page.body) == ROWS
    table = page.to_table(["id", "text"])
    assert table.to_pylist() == [
        {"id": "1", "text": "plain"},
        {"id": "2", "text": "a },{ inside a value"},
        {"id": "3", "text": None},
    ]
    assert page.parsed_rows == 3
    assert page.first_keys() == {"id", "text"}


def test_socrata_style_page_parses_on_the_fast_path_and_rebuilds_as_the_same_json():
    rows = [{"id": str(i), "text": f"row {i}"} for i in range(5)]
    body = b"[" + b"\n,".join(orjson.dumps(row) for row in rows) + b"]\n"
    page = JsonPage(body)
    assert page.size == len(body)
    assert page.rows == 5
    assert orjson.loads(page.body) == rows
    assert page.to_table(["id", "text"]).to_pylist() == rows


def test_empty_page():
    page = JsonPage(b"[]")
    assert page.rows == 0 and page.size == 2
    assert page.to_table(["id"]).num_rows == 0
    assert page.first_keys() == set()
