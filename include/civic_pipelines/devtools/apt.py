"""The Debian packages the test suite and the demo need, and the one place that installs them.

``make setup`` (which ``make demo`` and ``make test`` run first) runs this file with the system
Python, before any test lane starts: every missing package in one ``apt-get install``, serially,
waiting for dpkg's lock and retrying failed downloads, then once more after ``apt-get update``.
When everything is present it calls no apt at all (a few ``which`` look-ups). Not root and
something missing: one line naming what is missing, and a non-zero exit.

Tests and tools never install: they call :func:`require`, which fails with a message that says to
run ``make setup``. Only ``scripts/container_setup.py build``, run by hand, may call
:func:`install`. Standard library only (it runs before the virtualenv exists).

    python3 include/civic_pipelines/devtools/apt.py            # install what is missing
    python3 include/civic_pipelines/devtools/apt.py --check    # list what is missing, install nothing
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

# Debian package -> what proves it installed: a command (looked up on PATH and the sbin folders)
# or an absolute glob. What needs it, in order: the container tests and the extractor image
# (podman's Docker API with runc; debootstrap builds the base image), the dashboard browser tests,
# the PostgreSQL sink tests and bench/scale.py (a throwaway cluster from the server binaries),
# and Redis (the CeleryExecutor test's broker: devtools/redis_server.py).
PACKAGES: dict[str, tuple[str, ...]] = {
    "podman": ("podman",),
    "runc": ("runc",),
    "conmon": ("conmon", "/usr/libexec/podman/conmon"),
    "debootstrap": ("debootstrap",),
    # The CNI plugin that gives a podman network its DNS: the compose services of `make astro-local`
    # reach each other by name (postgres, api-server) as they do under Docker.
    "golang-github-containernetworking-plugin-dnsname": ("/usr/lib/cni/dnsname",),
    "chromium": ("chromium",),
    "postgresql": ("/usr/lib/postgresql/*/bin/initdb", "initdb"),
    "redis-server": ("redis-server",),
}
SBIN = ("/usr/local/sbin", "/usr/sbin", "/sbin")
LOCK_TIMEOUT_S = 600  # another apt/dpkg run on the machine: wait for it rather than fail
DOWNLOAD_RETRIES = 5  # apt's own per-file retries of a failed download
APT_OPTIONS = ("-o", f"DPkg::Lock::Timeout={LOCK_TIMEOUT_S}", "-o", f"Acquire::Retries={DOWNLOAD_RETRIES}")
SETUP_HINT = "run `make setup` as root (it installs the system packages the tests and the demo need)"


class MissingPackages(RuntimeError):
    """Raised by :func:`require` and :func:`install`: the message is one line."""


def _present(probe: str) -> bool:
    if probe.startswith("/"):
        return any(os.access(path, os.X_OK) for path in glob.glob(probe))
    search = os.pathsep.join([os.environ.get("PATH", ""), *SBIN])
    return shutil.which(probe, path=search) is not None


def missing(packages: dict[str, tuple[str, ...]] | None = None) -> list[str]:
    """The packages (of ``packages``, default all of :data:`PACKAGES`) with none of their probes present."""
    table = PACKAGES if packages is None else packages
    return [name for name, probes in table.items() if not any(_present(probe) for probe in probes)]


def require(*names: str) -> None:
    """Fail, with one line saying to run ``make setup``, unless every named package is present."""
    unknown = [name for name in names if name not in PACKAGES]
    if unknown:
        raise ValueError(f"not in civic_pipelines.devtools.apt.PACKAGES: {unknown}")
    absent = missing({name: PACKAGES[name] for name in names})
    if absent:
        raise MissingPackages(f"system package(s) not installed: {', '.join(absent)}; {SETUP_HINT}")


APT = "apt-get"  # the package tool; the unit tests point this at a stand-in script, never at apt


def _apt(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    return subprocess.run([APT, *APT_OPTIONS, *args], env=env, capture_output=True, text=True)


def _lists_empty() -> bool:
    """A fresh image ships without package lists: ``apt-get install`` would find nothing."""
    return not any(Path("/var/lib/apt/lists").glob("*_Packages*"))


def _tail(result: subprocess.CompletedProcess, lines: int = 15) -> str:
    return " | ".join((result.stdout + result.stderr).strip().splitlines()[-lines:])


def install(packages: dict[str, tuple[str, ...]] | None = None, log=print) -> list[str]:
    """Install whatever of ``packages`` is missing, in one serial ``apt-get install``; return what
    was installed (empty, with no apt call, when nothing was missing)."""
    table = PACKAGES if packages is None else packages
    absent = missing(table)
    if not absent:
        return []
    if os.geteuid() != 0:
        raise MissingPackages(
            f"system package(s) not installed: {', '.join(absent)}; installing them needs root: "
            f"run `sudo make setup`, or `apt-get install {' '.join(absent)}` as root"
        )
    started = time.monotonic()
    log(f"installing {', '.join(absent)} from Debian's packages (apt-get; a few minutes on a fresh machine)")
    command = ("install", "-y", "-q", "--no-install-recommends", *absent)
    if _lists_empty():
        _apt("update", "-q")
    result = _apt(*command)
    if result.returncode != 0:
        # Stale package lists (a 404 for a superseded version) or a download that failed past
        # apt's own retries: refresh the lists and try the whole install once more.
        log(f"apt-get install failed ({_tail(result, 3)}); apt-get update, then once more")
        updated = _apt("update", "-q")
        result = _apt(*command)
        if result.returncode != 0:
            update_note = "" if updated.returncode == 0 else f"; apt-get update also failed: {_tail(updated, 3)}"
            raise MissingPackages(f"apt-get install {' '.join(absent)} failed twice: {_tail(result)}{update_note}")
    still = missing(table)
    if still:
        raise MissingPackages(f"apt-get install succeeded but {', '.join(still)} still not found (checked {table})")
    log(f"installed {', '.join(absent)} in {time.monotonic() - started:.0f} s")
    return absent


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args == ["--check"]:
        absent = missing()
        print(" ".join(absent) if absent else "all present")
        return 1 if absent else 0
    if args:
        print(f"usage: {Path(__file__).name} [--check]", file=sys.stderr)
        return 2
    try:
        install(log=lambda message: print(f"system packages: {message}", flush=True))
    except MissingPackages as error:
        print(f"system packages: error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
