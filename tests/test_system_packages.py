"""The system-package step of ``make setup`` (``civic_pipelines.devtools.apt``) and the parts of
``scripts/container_setup.py`` that guard a fresh machine: checked against a fake PATH, never
calling apt (``subprocess.run`` fails the test if anything reaches it, except the stand-in package
tool and fake debootstrap on that PATH where a test puts them)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from civic_pipelines.devtools import apt

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

import container_setup  # noqa: E402


def fake_machine(tmp_path: Path, monkeypatch, present: set[str]) -> Path:
    """A PATH of executables for the packages in ``present`` (and nothing else: no sbin folders),
    and the PostgreSQL glob pointed inside ``tmp_path``."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    table = {}
    for name, probes in apt.PACKAGES.items():
        table[name] = tuple(str(tmp_path / probe.lstrip("/")) if probe.startswith("/") else probe for probe in probes)
    for name in present:
        probe = table[name][0]
        path = Path(probe.replace("*", "15")) if probe.startswith("/") else bin_dir / probe
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("#!/bin/sh\nexit 0\n")
        path.chmod(0o755)
    monkeypatch.setattr(apt, "PACKAGES", table)
    monkeypatch.setattr(apt, "SBIN", ())
    monkeypatch.setenv("PATH", str(bin_dir))
    return bin_dir


@pytest.fixture
def no_subprocess(monkeypatch):
    def refuse(*args, **kwargs):
        pytest.fail(f"a subprocess was started: {args[0] if args else kwargs}")

    monkeypatch.setattr(subprocess, "run", refuse)
    monkeypatch.setattr(subprocess, "Popen", refuse)


def test_everything_present_is_a_no_op_without_apt(tmp_path, monkeypatch, no_subprocess, capsys):
    fake_machine(tmp_path, monkeypatch, set(apt.PACKAGES))
    assert apt.missing() == []
    started = time.monotonic()
    assert apt.install() == []
    assert apt.main([]) == 0
    assert time.monotonic() - started < 0.5
    assert capsys.readouterr().out == ""  # make setup stays quiet when there is nothing to do
    apt.require(*apt.PACKAGES)
    container_setup.ensure_packages()


def test_missing_packages_are_named_in_one_line_when_not_root(tmp_path, monkeypatch, no_subprocess, capsys):
    fake_machine(tmp_path, monkeypatch, set(apt.PACKAGES) - {"chromium", "postgresql", "debootstrap"})
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert apt.missing() == ["debootstrap", "chromium", "postgresql"]
    assert apt.main([]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert err.startswith("system packages: error: system package(s) not installed: debootstrap, chromium, postgresql;")
    assert "sudo make setup" in err
    assert apt.main(["--check"]) == 1
    assert capsys.readouterr().out == "debootstrap chromium postgresql\n"
    # What tests and tools call instead of installing: one line that says to run make setup.
    with pytest.raises(apt.MissingPackages, match=r"^system package\(s\) not installed: chromium; run `make setup`"):
        apt.require("chromium")
    apt.require("podman", "redis-server")
    with pytest.raises(apt.MissingPackages, match="debootstrap; run `make setup`"):
        container_setup.ensure_packages()


def test_as_root_one_serial_install_waiting_for_the_lock_then_update_and_retry(tmp_path, monkeypatch):
    """A stand-in package tool (``apt.APT``): the first install fails (as a failed download does), ``update`` works, the
    second install puts the commands in place. Every call waits for dpkg's lock and retries downloads."""
    bin_dir = fake_machine(tmp_path, monkeypatch, set(apt.PACKAGES) - {"redis-server", "chromium"})
    calls = tmp_path / "calls"
    (bin_dir / "fake-apt").write_text(f"""#!/bin/sh
PATH=/usr/bin:/bin
echo "$*" >> {calls}
case "$*" in
  *" update "*) exit 0 ;;
esac
if [ "$(grep -c ' install ' {calls})" = 1 ]; then echo "E: Failed to fetch http://deb.debian.org/x.deb" >&2; exit 100; fi
for c in redis-server chromium; do printf '#!/bin/sh\\n' > {bin_dir}/$c; chmod +x {bin_dir}/$c; done
""")
    (bin_dir / "fake-apt").chmod(0o755)
    monkeypatch.setattr(apt, "APT", str(bin_dir / "fake-apt"))
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setattr(apt, "_lists_empty", lambda: False)
    messages = []
    assert apt.install(log=messages.append) == ["chromium", "redis-server"]
    lines = calls.read_text().splitlines()
    options = "-o DPkg::Lock::Timeout=600 -o Acquire::Retries=5"
    assert lines == [
        f"{options} install -y -q --no-install-recommends chromium redis-server",
        f"{options} update -q",
        f"{options} install -y -q --no-install-recommends chromium redis-server",
    ]
    assert "E: Failed to fetch" in messages[1] and messages[-1].startswith("installed chromium, redis-server in ")
    assert apt.missing() == []


def test_debootstrap_reruns_after_a_failed_download_keeping_its_cache(tmp_path, monkeypatch):
    """A fake debootstrap that fails its first two runs (a download that failed) and succeeds on the
    third: each run gets the same --cache-dir and a fresh empty target; three failures end in one
    error naming debootstrap's own reason."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    runs = tmp_path / "runs"
    (bin_dir / "debootstrap").write_text(f"""#!/bin/sh
PATH=/usr/bin:/bin
for arg; do case "$arg" in --cache-dir=*) cache="${{arg#--cache-dir=}}" ;; esac; done
target=$(echo "$@" | awk '{{print $(NF-1)}}')
echo "$cache $(ls -A "$target" | wc -l)" >> {runs}
n=$(wc -l < {runs})
touch "$cache/pkg$n.deb"
if [ "$n" -lt "${{SUCCEED_ON:-3}}" ]; then echo "E: Couldn't download packages: python3.11" >&2; exit 1; fi
touch "$target/ok"
""")
    (bin_dir / "debootstrap").chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.setenv("CIVIC_DEBIAN_MIRROR", "http://mirror.invalid/debian")
    home = tmp_path / "home"
    rootfs = container_setup.debootstrap(home, pause=0)
    assert (rootfs / "ok").exists()
    cache = home / "debs"
    assert runs.read_text().splitlines() == [f"{cache} 0"] * 3  # same cache, empty target each time
    assert sorted(p.name for p in cache.iterdir()) == ["pkg1.deb", "pkg2.deb", "pkg3.deb"]  # kept between runs
    assert [p.name for p in home.iterdir() if p.name.startswith("rootfs-")] == [rootfs.name]  # failed targets removed

    runs.unlink()
    monkeypatch.setenv("SUCCEED_ON", "99")
    with pytest.raises(RuntimeError) as failed:
        container_setup.debootstrap(home, pause=0)
    message = str(failed.value)
    assert message.startswith(
        "debootstrap bookworm from http://mirror.invalid/debian failed 3 times (try 1: "
        "E: Couldn't download packages: python3.11; try 2:"
    )
    assert message.endswith(f"the .debs fetched so far stay in {cache}")


def test_one_image_build_at_a_time(tmp_path):
    """The lock setup() holds while it builds: a second holder (another test lane) waits for it."""
    order = []
    with container_setup.setup_lock(tmp_path):
        waiter = threading.Thread(target=lambda: _hold(tmp_path, order))
        waiter.start()
        time.sleep(0.5)
        order.append("first done")
    waiter.join(timeout=10)
    assert order == ["first done", "second in"]
    with pytest.raises(RuntimeError, match="waited 0 s for the image-building lock"):
        with container_setup.setup_lock(tmp_path):
            _hold(tmp_path, order, timeout=0.2)


def _hold(home, order, timeout=30):
    with container_setup.setup_lock(home, timeout=timeout):
        order.append("second in")
