"""Transitional: the module moved to ``fetch.py`` whole (so its history follows); the next commit splits it
into the package's modules."""

from civic_pipelines.sources.mds.fetch import *  # noqa: F401,F403
from civic_pipelines.sources.mds.fetch import _canonical, _contains_combinations, log  # noqa: F401
