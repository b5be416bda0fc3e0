"""The small core every source and the runner share. Nothing here imports Airflow;
``civic_pipelines.orchestration`` is the only layer that does.

* ``spec``: :class:`SourceSpec` and :class:`Capabilities`, what a source declares about itself.
* ``source``: the :class:`Source` protocol the runner calls, :class:`BlockData`, the errors a source raises.
* ``contract``: the lake contract (block columns, Arrow types, coercion, quarantine reasons).
* ``variables``: deployment variables (``AIRFLOW_VAR_*``, then whatever orchestration registers).
* ``secrets``: runtime secrets handed to the log masker orchestration registers.
* ``zipstream``: the one forward (streaming) zip reader the archive sources and the CKAN adapter share.

The HTTP retry policy is :func:`civic_pipelines.http.retry_policy`, one object for every source.
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
