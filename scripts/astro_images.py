"""Step 1 of ``scripts/astro_local.py``: what the project says about its Airflow image (the Runtime
tag of the Dockerfile's FROM line, the Airflow pin of the development lock, the CLI's project name)
and the images built from it with podman, each cached by a hash of its inputs: the wheelhouse, the
Runtime and postgres stand-ins, and the project's own Dockerfile with only its FROM line swapped.
"""

from __future__ import annotations

import hashlib
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

import container_setup  # noqa: E402

STANDIN = ROOT / "scripts" / "astro_standin"
RUNTIME_REPO = "localhost/astro-runtime-standin"
POSTGRES_REPO = "localhost/postgres-standin"


def log(message: str) -> None:
    print(f"[astro-local {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- what the project says


def runtime_tag(dockerfile: Path = ROOT / "Dockerfile") -> str:
    """The Runtime tag of the Dockerfile's FROM line, e.g. ``3.3-2-python-3.11``."""
    match = re.search(r"^FROM\s+\S*runtime:(\S+)", dockerfile.read_text(), re.M)
    if not match:
        raise RuntimeError("the Dockerfile's FROM line names no Astro Runtime image (…/runtime:<tag>)")
    return match.group(1)


def runtime_version(tag: str) -> str:
    """``3.3-2-python-3.11`` -> ``3.3-2`` (the label the CLI reads); ``airflow_line`` -> ``3.3``."""
    return tag.split("-python-")[0]


def airflow_line(tag: str) -> str:
    return tag.split("-")[0]


def locked_airflow(lock: Path = ROOT / "requirements-dev.txt") -> str:
    match = re.search(r"^apache-airflow==(\S+)$", lock.read_text(), re.M)
    if not match:
        raise RuntimeError("requirements-dev.txt pins no apache-airflow")
    return match.group(1)


def project_name(root: Path = ROOT) -> str:
    """The CLI's ProjectNameUnique: .astro/config.yaml's project name, "_", md5 of the path[:6];
    compose gets it lower-cased with only [a-z0-9_-] kept (normalizeName)."""
    name = yaml.safe_load((root / ".astro" / "config.yaml").read_text())["project"]["name"]
    unique = f"{name}_{hashlib.md5(str(root).encode()).hexdigest()[:6]}"  # noqa: S324 - the CLI's own scheme
    return re.sub(r"[^a-z0-9_-]", "", unique.lower()).lstrip("_-")


# ---------------------------------------------------------------- 1. images


def image_wheelhouse(home: Path) -> tuple[Path, float]:
    """Every wheel the Runtime stand-in and the project image install (Airflow, the Runtime's
    standard provider, requirements.txt, setuptools for the editable install), at the development
    lock's pins, built by the host's pip (same Debian, same Python 3.11) once per lock."""
    folder = home / "astro-wheels"
    folder.mkdir(parents=True, exist_ok=True)
    stamp = folder / ".inputs.sha256"
    digest = hashlib.sha256(
        b"".join((ROOT / name).read_bytes() for name in ("requirements.txt", "requirements-dev.txt"))
    )
    if stamp.exists() and stamp.read_text() == digest.hexdigest():
        return folder, 0.0
    started = time.monotonic()
    command = [
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "-q",
        "--disable-pip-version-check",
        "-w",
        str(folder),
        "-c",
        str(ROOT / "requirements-dev.txt"),
        "-r",
        str(ROOT / "requirements.txt"),
        f"apache-airflow=={locked_airflow()}",
        "apache-airflow-providers-standard",
        "setuptools>=68",
        "wheel",
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=1800)
    if result.returncode != 0:
        errors = [line for line in result.stderr.splitlines() if "is ignored" not in line]
        raise RuntimeError(f"pip wheel for the Airflow image failed: {' '.join(errors)[-3000:]}")
    stamp.write_text(digest.hexdigest())
    return folder, time.monotonic() - started


def _digest(*parts: bytes | str) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part if isinstance(part, bytes) else part.encode())
        digest.update(b"|")
    return digest.hexdigest()[:12]


def _build(env: dict, tag: str, dockerfile: Path, context: Path, volumes: list[str], *args: str) -> float:
    started = time.monotonic()
    # --format docker: the OCI image format has no ONBUILD, and buildah drops the Runtime's
    # build steps from an OCI image (Docker's images always keep them).
    container_setup.podman(
        env,
        "build",
        "--format",
        "docker",
        "--pull=never",
        "--network",
        "host",
        "--layers",
        "-f",
        str(dockerfile),
        *volumes,
        *args,
        "-t",
        tag,
        str(context),
        timeout=3600,
    )
    return time.monotonic() - started


def build_runtime_standin(env: dict, base: str, wheels: Path, home: Path) -> tuple[str, float]:
    tag_ = runtime_tag()
    airflow = locked_airflow()
    if not airflow.startswith(airflow_line(tag_) + "."):
        raise RuntimeError(
            f"requirements-dev.txt pins apache-airflow=={airflow}, the Runtime tag {tag_} is Airflow {airflow_line(tag_)}"
        )
    key = _digest(
        container_setup.image_id(env, base),
        airflow,
        tag_,
        *((STANDIN / name).read_bytes() for name in ("Dockerfile.runtime", "entrypoint")),
        "docker-format",
    )
    tag = f"{RUNTIME_REPO}:{tag_}-{key}"
    if container_setup.image_exists(env, tag):
        return tag, 0.0
    seconds = _build(
        env,
        tag,
        STANDIN / "Dockerfile.runtime",
        STANDIN,
        container_setup._build_volumes(home, wheels),
        "--build-arg",
        f"BASE_IMAGE={base}",
        "--build-arg",
        f"AIRFLOW_VERSION={airflow}",
        "--build-arg",
        f"RUNTIME_VERSION={runtime_version(tag_)}",
    )
    log(f"Runtime stand-in {tag} built in {seconds:.1f} s")
    return tag, seconds


def build_postgres_standin(env: dict, base: str) -> tuple[str, float]:
    key = _digest(
        container_setup.image_id(env, base),
        *((STANDIN / name).read_bytes() for name in ("Dockerfile.postgres", "postgres-entrypoint")),
    )
    tag = f"{POSTGRES_REPO}:15-{key}"
    if container_setup.image_exists(env, tag):
        return tag, 0.0
    seconds = _build(env, tag, STANDIN / "Dockerfile.postgres", STANDIN, [], "--build-arg", f"BASE_IMAGE={base}")
    log(f"postgres stand-in {tag} built in {seconds:.1f} s")
    return tag, seconds


def build_project_image(env: dict, runtime: str, wheels: Path, home: Path, name: str) -> tuple[str, float]:
    """The project's Dockerfile with only its FROM line changed (a temporary copy outside the
    context), built as the CLI names it: <project>/airflow:latest. podman's layer cache makes a
    rebuild with unchanged sources take seconds."""
    text = (ROOT / "Dockerfile").read_text()
    swapped, count = re.subn(r"^FROM\s+\S+", f"FROM {runtime}", text, count=1, flags=re.M)
    assert count == 1
    with tempfile.TemporaryDirectory(prefix="astro-dockerfile-") as folder:
        dockerfile = Path(folder) / "Dockerfile"
        dockerfile.write_text(swapped)
        tag = f"localhost/{name}/airflow:latest"
        seconds = _build(
            env,
            tag,
            dockerfile,
            ROOT,
            container_setup._build_volumes(home, wheels),
            "--ignorefile",
            str(ROOT / ".dockerignore"),
        )
    log(f"project image {tag} built in {seconds:.1f} s (FROM {runtime})")
    return tag, seconds


# ---------------------------------------------------------------- 2. the compose project
