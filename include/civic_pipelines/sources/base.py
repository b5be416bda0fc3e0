"""The sources' names for the core contract (:mod:`civic_pipelines.core`), re-exported so a
source module imports what it declares and returns from its own package."""

from civic_pipelines.core.source import BlockData, EmptyAnswerError, NotPublished, SchemaDriftError, refuse_emptying  # noqa: F401 - re-exported
from civic_pipelines.core.spec import Capabilities, SourceSpec  # noqa: F401 - re-exported
