"""Debian packages the tests and benchmarks need on a fresh machine (a CI runner)."""

from __future__ import annotations

import os
import subprocess


def apt_install(package: str) -> None:
    """``apt-get install`` the package, refreshing the package lists once if the first try fails."""
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    command = ["apt-get", "install", "-y", "-q", "--no-install-recommends", package]
    if subprocess.run(command, env=env, capture_output=True).returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], env=env, check=True, capture_output=True)
        subprocess.run(command, env=env, check=True, capture_output=True)
