"""A Docker-API container engine for the tests and benches, on a machine with no Docker engine.

What it owns, in order (each step cached, each timed):

1. **podman, runc, conmon and debootstrap** from Debian's packages: ``make setup`` installs them
   (``civic_pipelines.devtools.apt``, the one place that installs system packages); here they are
   only checked, except that ``build`` run by hand installs what is missing (root only).
2. **Its own containers configuration** (``containers.conf``, ``storage.conf``) under one folder,
   ``$CIVIC_CONTAINERS_HOME`` (default ``~/.cache/civic-pipelines/containers``), kept between runs
   and outside the work tree so a fresh clone on the same machine reuses the images. The settings
   are the ones this kind of restricted sandbox needs: ``runc`` as the runtime (``crun`` fails on
   ``setrlimit RLIMIT_NOFILE`` and on hybrid cgroups), explicit ``nofile``/``nproc`` ulimits taken
   from this process's own limits (a container never asks for more than the sandbox grants),
   ``cgroupfs`` and file event logs (no systemd, no journald), and **no storage driver in
   storage.conf**: podman then picks overlay by itself (it prints a harmless "driver option must
   be set" error); with the driver set explicitly every API ``wait`` took 20 s here.
3. **The base image**: a Debian root filesystem made with ``debootstrap --variant=minbase``
   from Debian's mirror with only Python and its venv module, trimmed (docs, man pages, locales,
   apt lists) and imported with ``podman import`` as ``localhost/civic-debian-base:<suite>-<hash>``.
   The .debs stay in ``debs/`` under the same folder (``--cache-dir``: a rebuild validates them
   and downloads only the suite's index); a failed download reruns debootstrap (3 tries).
4. **The extractor image**: ``Dockerfile.extractor`` built on that base (build argument
   ``BASE_IMAGE``) as ``localhost/civic-extractor:<hash>``, the hash taken over every input
   (Dockerfile, .dockerignore, requirements, pyproject, the package's sources, the base image).
   The pinned wheels come from the package registry through the host's pip into a wheelhouse
   under the same folder (kept: a rebuild downloads nothing), and the build's ``pip`` installs
   from that alone (a pip.conf and the wheelhouse mounted for the RUN steps only, never copied
   into the image). podman's layer cache keeps the dependency layer while only the package
   changes, so a change to the sources rebuilds in seconds.
5. **The API service**: ``podman system service`` on a unix socket in a folder the caller
   chooses (a test's temporary folder), stopped afterwards.

Steps 2-4 run under a file lock (``setup.lock`` in the same folder): the test lanes may each
ask for the images at once; the second waits and then finds them built.

Command line::

    .venv/bin/python scripts/container_setup.py build          # steps 1-4, prints the timings
    .venv/bin/python scripts/container_setup.py serve [SOCKET] # + step 5 until Ctrl-C
    .venv/bin/python scripts/container_setup.py clean          # remove every image and the storage
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from filelock import FileLock, Timeout

from civic_pipelines.devtools import apt

ROOT = Path(__file__).resolve().parents[1]
HOME = Path(
    os.environ.get("CIVIC_CONTAINERS_HOME")
    or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "civic-pipelines" / "containers"
)
SUITE = "bookworm"
GLIBC_MINOR = 36  # bookworm's glibc 2.36: the newest manylinux wheels its Python can take
BASE_PACKAGES = ("python3", "python3-venv")
# Removed from the root filesystem before the import: nothing at run time reads them.
BASE_TRIM = (
    "usr/share/doc",
    "usr/share/man",
    "usr/share/info",
    "usr/share/locale",
    "var/cache/apt",
    "var/lib/apt/lists",
    "var/log",
    "debootstrap",
)
BASE_REPO = "localhost/civic-debian-base"
EXTRACTOR_REPO = "localhost/civic-extractor"
KEEP_IMAGES = 4  # older extractor images kept besides the current one
RECIPE = "1"  # bump when a step changes in a way the hashed inputs do not show
SYSTEM_PACKAGES = ("podman", "runc", "conmon", "debootstrap")  # names in civic_pipelines.devtools.apt.PACKAGES
DEBOOTSTRAP_TRIES = 3
DEBOOTSTRAP_RETRY_PAUSE_S = 10
SETUP_LOCK_TIMEOUT_S = 1800  # a fresh build (debootstrap + pip download + podman build) takes minutes


def log(message: str) -> None:
    print(f"[containers {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- 1. packages


def ensure_packages(install: bool = False) -> float:
    """podman, runc, conmon and debootstrap: checked (a clear error saying to run ``make setup``
    when one is missing), or, with ``install`` (``build`` run by hand), installed when missing;
    returns the seconds spent."""
    if not install:
        apt.require(*SYSTEM_PACKAGES)
        return 0.0
    started = time.monotonic()
    installed = apt.install({name: apt.PACKAGES[name] for name in SYSTEM_PACKAGES}, log=log)
    return time.monotonic() - started if installed else 0.0


# ---------------------------------------------------------------- 2. configuration


def _ulimit(name: str, which: int, cap_file: str) -> str:
    """This process's own limit, capped by the kernel's ceiling for it: runc sets a container's
    limits from outside (prlimit), and here that fails with EPERM for any value above what the
    sandbox grants (seen: nproc above pid_max, 32768, refused while the shell's limit says 96364)."""
    soft, hard = resource.getrlimit(which)
    try:
        cap = int(Path(cap_file).read_text().split()[0])
    except (OSError, ValueError, IndexError):
        cap = None
    values = []
    for value in (soft, hard):
        if value == resource.RLIM_INFINITY:
            value = cap if cap else -1
        elif cap:
            value = min(value, cap)
        values.append(str(value))
    return f"{name}={values[0]}:{values[1]}"


def write_config(home: Path = HOME) -> dict[str, str]:
    """Write containers.conf and storage.conf under ``home``; return the environment that makes
    podman (and the service it starts) use them."""
    for name in ("storage", "run", "tmp", "buildtmp"):
        (home / name).mkdir(parents=True, exist_ok=True)
    containers_conf = f"""# Written by scripts/container_setup.py: podman for this project's tests, in a restricted sandbox.
[containers]
# podman's defaults (1048576 of each) are more than the sandbox grants, and runc fails on them: ask for what we have.
default_ulimits = ["{_ulimit("nofile", resource.RLIMIT_NOFILE, "/proc/sys/fs/nr_open")}", "{_ulimit("nproc", resource.RLIMIT_NPROC, "/proc/sys/kernel/pid_max")}"]
log_driver = "k8s-file"

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
tmp_dir = "{home / "tmp"}"
"""
    # No `driver` here on purpose (see the module docstring): podman chooses overlay itself.
    storage_conf = f"""# Written by scripts/container_setup.py. The storage driver is left unset on purpose.
[storage]
runroot = "{home / "run"}"
graphroot = "{home / "storage"}"
"""
    for name, text in (("containers.conf", containers_conf), ("storage.conf", storage_conf)):
        path = home / name
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
    return {
        "CONTAINERS_CONF": str(home / "containers.conf"),
        "CONTAINERS_STORAGE_CONF": str(home / "storage.conf"),
        # buildah keeps RUN --mount=type=cache folders (the pip cache) under $TMPDIR.
        "TMPDIR": str(home / "buildtmp"),
    }


def podman(env: dict[str, str], *args: str, check: bool = True, **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(["podman", *args], env={**os.environ, **env}, capture_output=True, text=True, **kwargs)
    if check and result.returncode != 0:
        raise RuntimeError(f"podman {' '.join(args[:3])} failed ({result.returncode}): {result.stderr[-3000:]}")
    return result


def image_exists(env: dict[str, str], tag: str) -> bool:
    return podman(env, "image", "exists", tag, check=False).returncode == 0


def image_id(env: dict[str, str], tag: str) -> str:
    return podman(env, "image", "inspect", "--format", "{{.Id}}", tag).stdout.strip()


# ---------------------------------------------------------------- 3. the base image


def debian_mirror() -> str:
    """The machine's own Debian mirror (deb822 or one-line sources), else deb.debian.org."""
    if os.environ.get("CIVIC_DEBIAN_MIRROR"):
        return os.environ["CIVIC_DEBIAN_MIRROR"]
    for path in sorted(Path("/etc/apt/sources.list.d").glob("*.sources")):
        for line in path.read_text().splitlines():
            if line.startswith("URIs:") and "security" not in line:
                return line.split()[1]
    sources_list = Path("/etc/apt/sources.list")
    if sources_list.exists():
        for line in sources_list.read_text().splitlines():
            parts = line.split()
            if len(parts) >= 3 and parts[0] == "deb" and "security" not in parts[1] and not parts[1].startswith("["):
                return parts[1]
    return "http://deb.debian.org/debian"


def base_tag() -> str:
    recipe = json.dumps({"suite": SUITE, "packages": BASE_PACKAGES, "trim": BASE_TRIM, "recipe": RECIPE})
    return f"{BASE_REPO}:{SUITE}-{hashlib.sha256(recipe.encode()).hexdigest()[:12]}"


def debootstrap(home: Path = HOME, tries: int = DEBOOTSTRAP_TRIES, pause: float = DEBOOTSTRAP_RETRY_PAUSE_S) -> Path:
    """A fresh minbase root filesystem in a new folder under ``home``; returns the folder.

    The .debs go to ``home/debs`` (``--cache-dir``): debootstrap validates a cached .deb against the
    suite's index and downloads only what is missing or corrupt, so a rerun after a failed download
    (debootstrap itself does not retry a failed fetch: the package is left over and the run fails)
    fetches only what failed, and a rebuild fetches no .deb at all. Each try starts from an empty
    folder; after the last, the error names the packages debootstrap could not fetch."""
    cache = (home / "debs").resolve()  # debootstrap takes an absolute --cache-dir only
    cache.mkdir(parents=True, exist_ok=True)
    cached = {path.name for path in cache.glob("*.deb")}
    failures = []
    for attempt in range(1, tries + 1):
        rootfs = Path(tempfile.mkdtemp(prefix="rootfs-", dir=home))
        command = [
            "debootstrap",
            "--variant=minbase",
            f"--include={','.join(BASE_PACKAGES)}",
            f"--cache-dir={cache}",
            SUITE,
            str(rootfs),
            debian_mirror(),
        ]
        try:
            result = subprocess.run(command, capture_output=True, text=True, timeout=1800)
        except subprocess.TimeoutExpired:
            result = subprocess.CompletedProcess(command, -1, "", "timed out after 1800 s")
        if result.returncode == 0:
            fetched = {path.name for path in cache.glob("*.deb")} - cached
            log(f"debootstrap: {len(cached)} .debs from the cache, {len(fetched)} fetched (try {attempt})")
            return rootfs
        shutil.rmtree(rootfs, ignore_errors=True)
        output = (result.stdout + result.stderr).strip().splitlines()
        reason = next(
            (line for line in reversed(output) if line.startswith("E:")), output[-1] if output else "no output"
        )
        failures.append(f"try {attempt}: {reason}")
        if attempt < tries:
            log(
                f"debootstrap failed ({reason}); again in {pause:.0f} s, keeping the {len(list(cache.glob('*.deb')))} "
                "cached .debs"
            )
            time.sleep(pause)
    raise RuntimeError(
        f"debootstrap {SUITE} from {debian_mirror()} failed {tries} times ({'; '.join(failures)}); "
        f"the .debs fetched so far stay in {cache}"
    )


def build_base(env: dict[str, str], home: Path = HOME) -> tuple[str, float]:
    """The Debian base image, made with debootstrap once; returns (tag, seconds spent)."""
    tag = base_tag()
    if image_exists(env, tag):
        return tag, 0.0
    started = time.monotonic()
    rootfs = debootstrap(home)
    try:
        bootstrapped = time.monotonic()
        for relative in BASE_TRIM:
            target = rootfs / relative
            if target.is_dir():
                shutil.rmtree(target)
                if relative.startswith("var/"):
                    target.mkdir(parents=True)  # apt and dpkg expect these to exist
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "--numeric-owner", "-c", "."], stdout=subprocess.PIPE)
        imported = subprocess.run(
            [
                "podman",
                "import",
                "--change",
                'CMD ["/bin/bash"]',
                "--change",
                "ENV LANG=C.UTF-8",
                "--message",
                f"debootstrap --variant=minbase {SUITE} + {' '.join(BASE_PACKAGES)}",
                "-",
                tag,
            ],
            stdin=tar.stdout,
            env={**os.environ, **env},
            capture_output=True,
            text=True,
        )
        tar.stdout.close()
        tar.wait()
        if imported.returncode != 0 or tar.returncode != 0:
            raise RuntimeError(f"podman import failed: {imported.stderr[-2000:]}")
    finally:
        shutil.rmtree(rootfs, ignore_errors=True)
    seconds = time.monotonic() - started
    log(
        f"base image {tag}: debootstrap {bootstrapped - started:.1f} s, trim + import {time.monotonic() - bootstrapped:.1f} s"
    )
    return tag, seconds


# ---------------------------------------------------------------- 4. the extractor image


def _context_files() -> list[Path]:
    """The build inputs the extractor image depends on (what its COPY lines read)."""
    files = [
        ROOT / name
        for name in ("Dockerfile.extractor", ".dockerignore", "requirements-extractor.txt", "pyproject.toml")
    ]
    for path in sorted((ROOT / "include").rglob("*")):
        parts = set(path.relative_to(ROOT).parts)
        if (
            path.is_file()
            and "__pycache__" not in parts
            and path.suffix != ".pyc"
            and not any(part.endswith(".egg-info") for part in parts)
        ):
            files.append(path)
    return files


def extractor_tag(env: dict[str, str], base: str) -> str:
    digest = hashlib.sha256(f"{RECIPE}|{image_id(env, base)}".encode())
    for path in _context_files():
        digest.update(f"|{path.relative_to(ROOT)}|".encode())
        digest.update(path.read_bytes())
    return f"{EXTRACTOR_REPO}:{digest.hexdigest()[:12]}"


def wheelhouse(home: Path = HOME) -> tuple[Path, float]:
    """The extractor's pinned wheels (and setuptools, to build the package), downloaded from the
    package registry by the host's pip into ``home/wheels`` for the base's platform (CPython 3.11,
    the suite's glibc); files already there are kept, so a rebuild downloads nothing. The registry
    proxy here sends no cache headers, so pip's own cache (the Dockerfile's cache mount) keeps
    nothing; this folder is the cache."""
    started = time.monotonic()
    folder = home / "wheels"
    folder.mkdir(parents=True, exist_ok=True)
    # pip download re-resolves against the index even when every file is here: skip it while the
    # pins it last fetched are unchanged.
    stamp, pins = (
        folder / ".requirements.sha256",
        hashlib.sha256((ROOT / "requirements-extractor.txt").read_bytes()).hexdigest(),
    )
    if stamp.exists() and stamp.read_text() == pins:
        return folder, 0.0
    arch = os.uname().machine
    platforms = [f"manylinux_2_{minor}_{arch}" for minor in range(GLIBC_MINOR, 16, -1)] + [f"manylinux2014_{arch}"]
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "-q",
        "--disable-pip-version-check",
        "-d",
        str(folder),
        "-r",
        str(ROOT / "requirements-extractor.txt"),
        "setuptools>=68",
        "--only-binary=:all:",
        "--python-version",
        "3.11",
        "--implementation",
        "cp",
        "--abi",
        "cp311",
    ]
    for platform in platforms:
        command += ["--platform", platform]
    result = subprocess.run(command, capture_output=True, text=True, timeout=900)
    if result.returncode != 0:
        errors = [line for line in result.stderr.splitlines() if "is ignored" not in line]
        raise RuntimeError(f"pip download for the extractor image failed: {' '.join(errors)[-3000:]}")
    stamp.write_text(pins)
    return folder, time.monotonic() - started


def _build_volumes(home: Path, wheels: Path) -> list[str]:
    """Mounted into the build's RUN steps only (never into the image): the wheelhouse, and a pip
    configuration that installs from it alone."""
    config = home / "build-pip.conf"
    text = "[global]\nno-index = true\nfind-links = /etc/civic-build/wheels\n"
    if not config.exists() or config.read_text() != text:
        config.write_text(text)
    return ["-v", f"{wheels}:/etc/civic-build/wheels:ro", "-v", f"{config}:/etc/pip.conf:ro"]


def build_extractor(env: dict[str, str], base: str, home: Path = HOME) -> tuple[str, float]:
    """The extractor image for the current sources; returns (tag, seconds spent building)."""
    tag = extractor_tag(env, base)
    if image_exists(env, tag):
        return tag, 0.0
    started = time.monotonic()
    wheels, downloading = wheelhouse(home)
    podman(
        env,
        "build",
        "--pull=never",
        "--network",
        "host",
        "--layers",
        "-f",
        str(ROOT / "Dockerfile.extractor"),
        "--ignorefile",
        str(ROOT / ".dockerignore"),
        "--build-arg",
        f"BASE_IMAGE={base}",
        "--label",
        "civic.role=extractor",
        *_build_volumes(home, wheels),
        "-t",
        tag,
        str(ROOT),
        timeout=1800,
    )
    seconds = time.monotonic() - started
    # Old extractor images differ from the new one only in their top layers (a few MB): keep the
    # newest few (another checkout's test run may be using one), remove the rest.
    listed = podman(
        env,
        "images",
        "--sort",
        "created",
        "--filter",
        f"reference={EXTRACTOR_REPO}",
        "--format",
        "{{.Repository}}:{{.Tag}}",
    ).stdout.split()
    for old in [name for name in listed if name != tag and not name.endswith(":<none>")][KEEP_IMAGES:]:
        podman(env, "rmi", old, check=False)
    log(f"extractor image {tag} built in {seconds:.1f} s (wheels {downloading:.1f} s)")
    return tag, seconds


# ---------------------------------------------------------------- the whole setup


@dataclass
class Setup:
    env: dict[str, str]
    base: str
    image: str
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def cached(self) -> bool:
        return self.seconds.get("base", 0) == 0 and self.seconds.get("extractor", 0) == 0


@contextlib.contextmanager
def setup_lock(home: Path = HOME, timeout: float = SETUP_LOCK_TIMEOUT_S):
    """One image-building setup at a time on this machine (per ``home``): both test lanes may call
    :func:`setup`; the second waits here and then finds every image built."""
    home.mkdir(parents=True, exist_ok=True)
    lock = FileLock(home / "setup.lock")
    try:
        lock.acquire(timeout=0)
    except Timeout:
        log(f"another process is building the images ({home / 'setup.lock'}): waiting up to {timeout:.0f} s")
        try:
            lock.acquire(timeout=timeout)
        except Timeout:
            raise RuntimeError(f"waited {timeout:.0f} s for the image-building lock {home / 'setup.lock'}") from None
    try:
        yield
    finally:
        lock.release()


def setup(home: Path = HOME, install: bool = False) -> Setup:
    """Steps 1-4: packages, configuration, base image, extractor image (each skipped when done).
    The packages are only checked unless ``install`` (``build`` run by hand); steps 2-4 hold the
    setup lock."""
    started = time.monotonic()
    seconds = {"packages": ensure_packages(install)}
    with setup_lock(home):
        seconds["lock_wait"] = time.monotonic() - started - seconds["packages"]
        env = write_config(home)
        base, seconds["base"] = build_base(env, home)
        image, seconds["extractor"] = build_extractor(env, base, home)
    seconds["total"] = time.monotonic() - started
    return Setup(env=env, base=base, image=image, seconds=seconds)


# ---------------------------------------------------------------- 5. the API service


def _ping(path: Path, timeout: float = 2.0) -> bool:
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.settimeout(timeout)
            conn.connect(str(path))
            conn.sendall(b"GET /_ping HTTP/1.0\r\nHost: podman\r\n\r\n")
            return conn.recv(64).startswith(b"HTTP/1.")
    except OSError:
        return False


class Service:
    """``podman system service`` on ``<folder>/podman.sock``; ``url`` is what DockerOperator takes."""

    def __init__(self, folder: Path, env: dict[str, str]):
        self.folder = Path(folder)
        self.socket = self.folder / "podman.sock"
        self.url = f"unix://{self.socket}"
        self.env = env
        self.process: subprocess.Popen | None = None
        self.log_path = self.folder / "podman-service.log"

    def start(self, timeout: float = 60.0) -> Service:
        self.folder.mkdir(parents=True, exist_ok=True)
        if len(str(self.socket)) > 100:
            raise RuntimeError(f"unix socket path too long for the kernel: {self.socket}")
        with open(self.log_path, "ab") as output:
            self.process = subprocess.Popen(
                ["podman", "system", "service", "--time", "0", self.url],
                env={**os.environ, **self.env},
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while not (self.socket.exists() and _ping(self.socket)):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"podman system service did not answer on {self.socket}: {self.log_tail()}")
            time.sleep(0.1)
        return self

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=15)
        self.process = None
        self.socket.unlink(missing_ok=True)

    def __enter__(self) -> Service:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("build", help="install podman, build the base and the extractor image (cached)")
    serve = commands.add_parser("serve", help="build, then serve the Docker API on a unix socket until Ctrl-C")
    serve.add_argument("socket_dir", nargs="?", default=str(HOME / "sock"))
    commands.add_parser("clean", help="remove the images, the layer cache and the storage")
    args = parser.parse_args(argv)
    if args.command == "clean":
        env = write_config()
        podman(env, "system", "reset", "--force", check=False)
        shutil.rmtree(HOME, ignore_errors=True)
        print(f"removed {HOME}")
        return 0
    done = setup(install=True)
    print(
        json.dumps(
            {
                "base": done.base,
                "image": done.image,
                "home": str(HOME),
                "seconds": {k: round(v, 1) for k, v in done.seconds.items()},
            },
            indent=2,
        )
    )
    if args.command == "serve":
        with Service(Path(args.socket_dir), done.env) as service:
            print(f"Docker API on {service.url} (Ctrl-C stops it)", flush=True)
            try:
                service.process.wait()
            except KeyboardInterrupt:
                pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
