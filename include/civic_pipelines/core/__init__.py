"""The small core every source and the runner share: the source contract and its declared capabilities.

Nothing here imports Airflow; ``civic_pipelines.orchestration`` is the only layer that does.
"""

from civic_pipelines.core.source import (
    BlockData,
    BlockSource,
    EmptyAnswerError,
    NotPublished,
    SchemaDriftError,
    Source,
    StreamedSource,
    refuse_emptying,
)
from civic_pipelines.core.spec import Capabilities, SourceSpec

__all__ = [
    "BlockData",
    "BlockSource",
    "Capabilities",
    "EmptyAnswerError",
    "NotPublished",
    "SchemaDriftError",
    "Source",
    "SourceSpec",
    "StreamedSource",
    "refuse_emptying",
]
