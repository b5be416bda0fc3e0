"""Step 1 of ``scripts/astro_local.py``: what the project says about its Airflow image (the Runtime
tag of the Dockerfile's FROM line, the Airflow pin of the development lock, the CLI's project name)
and the images built from it with podman, each cached by a hash of its inputs: the Runtime and
postgres stand-ins, and the project's own Dockerfile with only its FROM line swapped. Python
packages go in with uv from the host's cache (``install_volumes``), offline.
"""

from __future__ import annotations

import hashlib
import re
import shutil
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


def host_uv() -> Path:
    """The uv that `make setup` installed beside this interpreter (the lock's pin)."""
    found = shutil.which("uv", path=str(Path(sys.executable).parent)) or shutil.which("uv")
    if not found:
        raise RuntimeError("no uv beside this Python: run `make setup`")
    return Path(found).resolve()


def install_volumes(home: Path) -> list[str]:
    """Mounted into the stand-ins' RUN steps only (never into an image): what the stand-in's
    ``install-python-dependencies`` installs with (the host's uv, its cache, which `make setup`
    filled with every wheel of the development lock, and the lock as constraints), and for the
    project Dockerfile's own ``pip install -e``, a pip.conf with no index and the extractor's
    wheelhouse, which holds setuptools (its build backend)."""
    uv = host_uv()
    cache = subprocess.run([str(uv), "cache", "dir"], capture_output=True, text=True, check=True).stdout.strip()
    Path(cache).mkdir(parents=True, exist_ok=True)
    wheels, _ = container_setup.wheelhouse(home)
    return [
        "-v",
        f"{uv}:/etc/civic-build/uv:ro",
        "-v",
        f"{cache}:/etc/civic-build/uv-cache",
        "-v",
        f"{ROOT / 'requirements-dev.txt'}:/etc/civic-build/constraints.txt:ro",
        *container_setup._build_volumes(home, wheels),
    ]


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


def build_runtime_standin(env: dict, base: str, home: Path) -> tuple[str, float]:
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
        *(
            (STANDIN / name).read_bytes()
            for name in ("Dockerfile.runtime", "entrypoint", "install-python-dependencies")
        ),
        (ROOT / "requirements-dev.txt").read_bytes(),
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
        install_volumes(home),
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


def build_project_image(env: dict, runtime: str, home: Path, name: str) -> tuple[str, float]:
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
        seconds = _build(env, tag, dockerfile, ROOT, install_volumes(home), "--ignorefile", str(ROOT / ".dockerignore"))
    log(f"project image {tag} built in {seconds:.1f} s (FROM {runtime})")
    return tag, seconds


def tag_project_extractor(env: dict, extractor: str, name: str) -> str:
    """The extractor image under this project's own name (<project>/extractor:latest, beside the
    CLI's <project>/airflow:latest), the name the stack's DockerOperator is given: podman's event
    log records a container's image by the name it was created with, so the stack's extractor
    containers are told apart from those other tests start from the same image at the same time."""
    tag = f"localhost/{name}/extractor:latest"
    container_setup.podman(env, "tag", extractor, tag, timeout=120)
    return tag


# ---------------------------------------------------------------- 2. the compose project
