"""Every registered source keeps the core contract: what its spec declares is what it offers.

The runner and the DAG factory read ``SPEC.capabilities`` and never look at a source's functions;
this test is where the declaration and the functions are held together.
"""

from __future__ import annotations

import inspect

import pytest
from stand_in_source import register, stand_in_spec

from civic_pipelines import sources
from civic_pipelines.core import BlockSource, Capabilities, Source, StreamedSource

RUNNER_PROBE_KEYWORDS = {"month", "part", "previous"}
RUNNER_BLOCK_KEYWORDS = {"landed_at", "part", "previous", "location", "force"}

# What each hand-written source declares, written out so a change to a declaration is a visible decision.
DECLARED = {
    "mds": Capabilities(configured_parts=True, several_tables=True, incomplete_hours=True, postgres_sink=True),
    "srwr": Capabilities(several_tables=True),
    "street_manager": Capabilities(streamed=True),
}


def accepts(function, names: set[str]) -> set[str]:
    parameters = inspect.signature(function).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return set(names)
    return names & set(parameters)


@pytest.mark.parametrize("name", sources.names())
def test_a_source_offers_what_its_spec_declares(name):
    source = sources.get(name)
    capabilities = source.SPEC.capabilities
    assert isinstance(source, Source)
    assert accepts(source.probe, RUNNER_PROBE_KEYWORDS) == RUNNER_PROBE_KEYWORDS
    if capabilities.streamed:
        assert isinstance(source, StreamedSource) and not hasattr(source, "extract_block")
        assert accepts(source.stream_block, RUNNER_BLOCK_KEYWORDS | {"writer"}) == RUNNER_BLOCK_KEYWORDS | {"writer"}
    else:
        assert isinstance(source, BlockSource) and not hasattr(source, "stream_block")
        assert accepts(source.extract_block, RUNNER_BLOCK_KEYWORDS) == RUNNER_BLOCK_KEYWORDS
    assert callable(getattr(source, "parts", None)) == capabilities.configured_parts
    assert bool(getattr(source, "POSTGRES_TABLES", None)) == capabilities.postgres_sink
    if name in DECLARED:
        assert capabilities == DECLARED[name]
    else:  # a dataset file on a generic adapter: one month, one table, one request walk
        assert capabilities == Capabilities()


def test_the_declarations_drive_the_runner_and_the_dag():
    assert sources.parts("mds") == ["voi", "lyft", "bolt", "dott"]  # configured: the source lists them
    assert sources.parts("street_manager") == ["permit", "activity", "section_58"]  # fixed: the spec lists them
    assert sources.parts("seattle_crime") == []
    assert sources.spec("mds").conn_ids("lyft") == ["civic_mds", "civic_mds_lyft"]
    assert sources.spec("minneapolis_311").variables == ("civic_minneapolis_311_layers",)


def test_a_spec_refuses_parts_both_fixed_and_configured():
    with pytest.raises(ValueError, match="either fixed"):
        stand_in_spec("x", parts=("a",), capabilities=Capabilities(configured_parts=True))
    with pytest.raises(ValueError, match="placeholder"):
        stand_in_spec("x", part_conn_id="civic_x_provider")


def test_the_runner_refuses_tables_a_source_did_not_declare(monkeypatch, lake):
    import types

    import pyarrow as pa

    from civic_pipelines import extract
    from civic_pipelines.core import BlockData

    spec = stand_in_spec("undeclared")
    block = BlockData(data=pa.table({"id": [1]}), quarantine=None, tables={"extra": pa.table({"id": [1]})})
    module = types.SimpleNamespace(
        SPEC=spec,
        auth_headers=lambda c: {},
        probe=lambda s, c, **kw: {"watermark": "1"},
        extract_block=lambda s, c, m, p, **kw: block,
    )
    register(monkeypatch, module)
    with pytest.raises(TypeError, match="does not declare several_tables"):
        extract.run_block("undeclared", "2024-01", lake=lake)
