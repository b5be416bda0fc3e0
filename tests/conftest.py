"""Shared fixtures: an isolated data folder per session, Airflow home, and the replay server."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from reliability_plugin import pytest_configure, pytest_runtest_makereport, reliability  # noqa: F401

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "include"))

# Isolate everything a test run writes, before Airflow or the package read their settings.
_RUN_DIR = Path(os.environ.get("CIVIC_TEST_DIR", ROOT / "test-output")).resolve()
if os.environ.get("PYTEST_XDIST_WORKER"):
    # One folder per pytest-xdist lane: its own Airflow metadata DB (two `airflow db migrate` on one
    # SQLite file race), lake and warehouse (DuckDB allows one writing process per file).
    _RUN_DIR = _RUN_DIR / os.environ["PYTEST_XDIST_WORKER"]
_RUN_DIR.mkdir(parents=True, exist_ok=True)
# Set, not defaulted: pytest-xdist's workers inherit the controller's environment, which already
# holds the controller's paths.
os.environ["CIVIC_DATA_DIR"] = str(_RUN_DIR / "data")
os.environ["CIVIC_LAKE"] = str(_RUN_DIR / "data" / "lake")
os.environ["CIVIC_WAREHOUSE"] = str(_RUN_DIR / "data" / "warehouse.duckdb")
os.environ["AIRFLOW_HOME"] = str(_RUN_DIR / "airflow")
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
os.environ.setdefault("AIRFLOW__CORE__DAGS_FOLDER", str(ROOT / "dags"))
os.environ.setdefault("AIRFLOW__COSMOS__ENABLE_TELEMETRY", "False")
os.environ.setdefault("DBT_SEND_ANONYMOUS_USAGE_STATS", "False")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("CIVIC_HTTP_BACKOFF", "0.05")
os.environ.setdefault("NO_PROXY", "*")


@pytest.fixture(scope="session")
def run_dir() -> Path:
    return _RUN_DIR


@pytest.fixture
def replay():
    """A fresh replay server on a free loopback port, stopped after the test."""
    from civic_pipelines.replay.server import make_server

    server = make_server(host="127.0.0.1", port=0)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def seattle_conn(replay, monkeypatch):
    """Point the seattle_crime connection at the replay server, as tests and the demo do."""
    import json

    host, port = replay.url.split("://", 1)[1].split(":")
    monkeypatch.setenv(
        "AIRFLOW_CONN_CIVIC_SEATTLE_CRIME",
        json.dumps({"conn_type": "http", "host": host, "port": int(port), "schema": "http"}),
    )
    return replay


@pytest.fixture
def lake(tmp_path) -> str:
    return str(tmp_path / "lake")


@pytest.fixture(scope="session")
def airflow_db():
    """Airflow's metadata database (SQLite in the test folder), migrated once per session."""
    import subprocess

    bin_dir = Path(sys.executable).parent
    result = subprocess.run([str(bin_dir / "airflow"), "db", "migrate"], capture_output=True, text=True, env=os.environ.copy())
    assert result.returncode == 0, result.stderr[-3000:]
    return os.environ["AIRFLOW_HOME"]


# --- a throwaway PostgreSQL server ------------------------------------------------------------------


def _postgres_bin_dir() -> Path | None:
    """The server binaries: $PG_BIN, Debian's newest /usr/lib/postgresql/<v>/bin, or initdb on PATH."""
    import glob
    import shutil

    candidates = [os.environ.get("PG_BIN", "")]
    versions = [p for p in glob.glob("/usr/lib/postgresql/*/bin") if Path(p).parent.name.isdigit()]
    candidates += sorted(versions, key=lambda p: int(Path(p).parent.name), reverse=True)
    found = shutil.which("initdb")
    candidates.append(str(Path(found).resolve().parent) if found else "")
    for candidate in candidates:
        if candidate and (Path(candidate) / "initdb").is_file() and (Path(candidate) / "pg_ctl").is_file():
            return Path(candidate)
    return None


def _install_postgres() -> None:
    """Debian's server package, when the machine has none (a fresh CI machine)."""
    import subprocess

    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    command = ["apt-get", "install", "-y", "-q", "--no-install-recommends", "postgresql"]
    if subprocess.run(command, env=env, capture_output=True).returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], env=env, check=True, capture_output=True)
        subprocess.run(command, env=env, check=True, capture_output=True)


def _server_user() -> tuple[int, int] | None:
    """initdb refuses to run as root: as root, run the server as the unprivileged ``postgres``
    user (Debian's package creates it), or a dedicated ``civic-pg`` user made here."""
    import pwd
    import subprocess

    if os.geteuid() != 0:
        return None
    for name in ("postgres", "civic-pg"):
        try:
            entry = pwd.getpwnam(name)
            return entry.pw_uid, entry.pw_gid
        except KeyError:
            continue
    subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", "civic-pg"], check=True)
    entry = pwd.getpwnam("civic-pg")
    return entry.pw_uid, entry.pw_gid


@pytest.fixture(scope="session")
def postgres_server():
    """A PostgreSQL cluster of its own (initdb + pg_ctl) on a free loopback port, with password
    (SCRAM) auth and pg_stat_statements; yields its details and the superuser's connection JSON
    for ``AIRFLOW_CONN_CIVIC_POSTGRES``; stopped and deleted at the end of the session."""
    import json
    import secrets
    import shutil
    import socket
    import subprocess
    import tempfile

    bin_dir = _postgres_bin_dir()
    if bin_dir is None:
        _install_postgres()
        bin_dir = _postgres_bin_dir()
    assert bin_dir is not None, "no PostgreSQL server binaries (initdb, pg_ctl) even after apt-get install postgresql"
    owner = _server_user()
    root = Path(tempfile.mkdtemp(prefix="civic-pg-"))  # in /tmp, which any user can traverse
    password = "pw-" + secrets.token_urlsafe(18)
    (root / "pwfile").write_text(password + "\n")
    if owner:
        for path in (root, root / "pwfile"):
            os.chown(path, *owner)
    run_as = {"user": owner[0], "group": owner[1], "extra_groups": []} if owner else {}
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")} | {"LC_ALL": "C", "LANG": "C"}

    def run(*args, **kwargs):
        result = subprocess.run([str(bin_dir / args[0]), *args[1:]], cwd=root, env=env, capture_output=True, text=True,
                                timeout=120, **run_as, **kwargs)
        assert result.returncode == 0, f"{args[0]} failed: {result.stdout[-2000:]} {result.stderr[-2000:]}"
        return result

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    data = root / "data"
    run("initdb", "-D", str(data), "-U", "civic", "--auth=scram-sha-256", f"--pwfile={root / 'pwfile'}",
        "-E", "UTF8", "--no-locale", "--no-sync", "--no-instructions")
    (root / "pwfile").unlink()
    options = (f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c shared_preload_libraries=pg_stat_statements "
               "-c fsync=off -c synchronous_commit=off -c full_page_writes=off")
    run("pg_ctl", "-D", str(data), "-l", str(root / "server.log"), "-o", options, "-w", "-t", "60", "start")
    try:
        import psycopg

        with psycopg.connect(host="127.0.0.1", port=port, user="civic", password=password, dbname="postgres",
                             autocommit=True) as conn:
            # Every database created from template1 (one per test) can read pg_stat_statements.
            with psycopg.connect(host="127.0.0.1", port=port, user="civic", password=password, dbname="template1",
                                 autocommit=True) as template:
                template.execute("create extension if not exists pg_stat_statements")
            conn.execute("create database civic")
        conn_json = json.dumps({"conn_type": "postgres", "host": "127.0.0.1", "port": port, "login": "civic",
                                "password": password, "schema": "civic"})
        yield {"host": "127.0.0.1", "port": port, "user": "civic", "password": password, "dbname": "civic",
               "conn_json": conn_json, "root": root}
    finally:
        subprocess.run([str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"], cwd=root, env=env,
                       capture_output=True, timeout=60, **run_as)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def postgres(postgres_server, monkeypatch):
    """A fresh database on the session's server for one test, set as ``civic_postgres``."""
    import json
    import uuid

    import psycopg

    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = dict(host=postgres_server["host"], port=postgres_server["port"], user=postgres_server["user"],
                 password=postgres_server["password"], autocommit=True)
    with psycopg.connect(dbname="postgres", **admin) as conn:
        conn.execute(f'create database "{name}"')
    conn_json = json.dumps({**json.loads(postgres_server["conn_json"]), "schema": name})
    monkeypatch.setenv("AIRFLOW_CONN_CIVIC_POSTGRES", conn_json)
    try:
        yield {**postgres_server, "dbname": name, "conn_json": conn_json,
               "connect": lambda: psycopg.connect(dbname=name, **admin)}
    finally:
        with psycopg.connect(dbname="postgres", **admin) as conn:
            conn.execute(f'drop database if exists "{name}" with (force)')

