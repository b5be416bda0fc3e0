"""Transitional: the module moved to ``transform.py`` whole (so its history follows); the next commit splits it
into the package's modules."""

from civic_pipelines.sources.street_manager.transform import *  # noqa: F401,F403
from civic_pipelines.sources.street_manager.transform import _LONDON, _parse_schema, log  # noqa: F401
