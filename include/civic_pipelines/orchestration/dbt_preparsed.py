"""dbt's parsed project, kept by the process that forks the dbt tasks and handed to each task's
in-process dbt, so a task runs its node without parsing the project again.

Every Cosmos dbt task (``InvocationMode.DBT_RUNNER``) starts a ``dbtRunner`` that loads the
project's partial-parse file and rebuilds the manifest before it runs its one node: about 0.2 s
quiet, 1 s under load, per node. dbt's programmatic API takes a parsed manifest instead
(``dbtRunner(manifest=...)``: "reuse a manifest ... for subsequent invocations"). The preload
(``preload.py``) parses the project once in the scheduler or Celery worker before its first fork
(:func:`parse_before_fork`) and routes Cosmos's runner through :func:`runner`, so every forked
task inherits the parsed manifest.

A manifest is only handed on while it is the project's current one: the fingerprint of the
project's files (path, mtime, size of everything but ``target/`` and ``logs/``) and the values of
the environment variables the project reads (``dbt_env``) must be those it was parsed with. Any
edit, or a task with other paths, falls back to dbt's own parse, as without the preload.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

log = logging.getLogger(__name__)

# What dbt parses: everything in the project folder except what dbt writes.
_WRITTEN_BY_DBT = ("target", "logs", "dbt_packages")

_parsed: tuple[tuple, object] | None = None  # (fingerprint, dbt Manifest)


def project_fingerprint(project_dir: Path, env: dict[str, str]) -> tuple:
    """The project's files (relative path, mtime, size) and the environment dbt resolves."""
    files = []
    for folder, subfolders, names in os.walk(project_dir):
        if Path(folder) == project_dir:
            subfolders[:] = [name for name in subfolders if name not in _WRITTEN_BY_DBT]
        for name in names:
            path = os.path.join(folder, name)
            stat = os.stat(path)
            files.append((os.path.relpath(path, project_dir), stat.st_mtime_ns, stat.st_size))
    return tuple(sorted(files)), tuple(sorted(env.items()))


def _current_fingerprint() -> tuple:
    from civic_pipelines import settings
    from civic_pipelines.orchestration.dbt_group import dbt_env

    return project_fingerprint(settings.dbt_project_dir(), dbt_env())


def parse_project() -> tuple[tuple, object]:
    """``dbt parse`` of the project in this process, with its environment (``dbt_env``) and
    target/logs in a scratch folder (``scratch_project_args``): (fingerprint, Manifest)."""
    from cosmos.dbt.project import environ
    from dbt.cli.main import dbtRunner

    from civic_pipelines import settings
    from civic_pipelines.orchestration.dbt_group import dbt_env, scratch_project_args

    env = dbt_env()
    fingerprint = project_fingerprint(settings.dbt_project_dir(), env)
    with scratch_project_args("dbt-preparse-") as project_args, environ(env):
        result = dbtRunner().invoke(["parse", *project_args])
    if result.exception is not None or not result.success or result.result is None:
        raise RuntimeError(f"dbt parse failed: {result.exception or 'no manifest'}")
    return fingerprint, result.result


def parse_before_fork() -> None:
    """Parse the project once in this process and route Cosmos's dbtRunner through :func:`runner`.
    Runs in a before-fork hook: a failure is logged, and tasks then parse as before."""
    global _parsed
    if _parsed is not None:
        return
    started = time.monotonic()
    try:
        _parsed = parse_project()
        install()
    except Exception as error:  # noqa: BLE001 - tasks then parse the project themselves
        log.warning("preload: parsing the dbt project before forking tasks failed (%r)", error)
        return
    log.info("preload: dbt project parsed in %.1f s before forking tasks", time.monotonic() - started)


def current_manifest():
    """The manifest parsed before the fork if the project and its environment are unchanged since."""
    if _parsed is None:
        return None
    fingerprint, manifest = _parsed
    if _current_fingerprint() != fingerprint:
        log.info("dbt project changed since the preload parsed it: dbt parses it in this task")
        return None
    return manifest


def runner(callbacks=None):
    """Cosmos's ``get_runner``, with the preloaded manifest when it is current."""
    from dbt.cli.main import dbtRunner

    return dbtRunner(manifest=current_manifest(), callbacks=callbacks or [])


def install() -> None:
    """Route Cosmos's in-process dbt invocations (``cosmos.dbt.runner.run_command`` calls the
    module's ``get_runner``) through :func:`runner`."""
    import cosmos.dbt.runner

    cosmos.dbt.runner.get_runner = runner
