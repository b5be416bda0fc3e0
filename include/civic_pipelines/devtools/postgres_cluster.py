"""A throwaway PostgreSQL cluster of its own (initdb + pg_ctl) on a free loopback port.

Used by the tests' ``postgres_server`` fixture and by ``bench/scale.py`` (Airflow's metadata
database). Password (SCRAM) auth, ``pg_stat_statements`` preloaded and creatable in every
database, durability switched off (fsync, synchronous_commit, full_page_writes): the cluster
lives for one session and is deleted after it.

    with postgres_cluster() as server:
        server["conn_json"]   # the superuser's Airflow connection JSON (database ``civic``)
        server["url"]         # a SQLAlchemy URL (postgresql+psycopg2://...) to the same database
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

from civic_pipelines.devtools.apt import SETUP_HINT, MissingPackages


def postgres_bin_dir() -> Path | None:
    """The server binaries: $PG_BIN, Debian's newest /usr/lib/postgresql/<v>/bin, or initdb on PATH."""
    candidates = [os.environ.get("PG_BIN", "")]
    versions = [p for p in glob.glob("/usr/lib/postgresql/*/bin") if Path(p).parent.name.isdigit()]
    candidates += sorted(versions, key=lambda p: int(Path(p).parent.name), reverse=True)
    found = shutil.which("initdb")
    candidates.append(str(Path(found).resolve().parent) if found else "")
    for candidate in candidates:
        if candidate and (Path(candidate) / "initdb").is_file() and (Path(candidate) / "pg_ctl").is_file():
            return Path(candidate)
    return None


def server_user() -> tuple[int, int] | None:
    """initdb refuses to run as root: as root, run the server as the unprivileged ``postgres``
    user (Debian's package creates it), or a dedicated ``civic-pg`` user made here."""
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


@contextlib.contextmanager
def postgres_cluster(dbname: str = "civic", settings: dict[str, str] | None = None) -> Iterator[dict]:
    """Start a cluster, create ``dbname``, yield its details; stop and delete it on the way out.

    ``settings`` adds server options (``-c name=value``), e.g. ``{"max_connections": "200"}``.
    Yields host, port, user, password, dbname, conn_json (Airflow connection JSON), url
    (SQLAlchemy, psycopg2 driver), root (the cluster's folder, with ``server.log``) and pid
    (the postmaster's process id)."""
    bin_dir = postgres_bin_dir()
    if bin_dir is None:
        # Never installed from here: `make setup` installs Debian's postgresql before the tests start.
        raise MissingPackages(
            f"no PostgreSQL server binaries (initdb, pg_ctl; $PG_BIN, /usr/lib/postgresql/<v>/bin "
            f"or PATH); {SETUP_HINT}"
        )
    owner = server_user()
    root = Path(tempfile.mkdtemp(prefix="civic-pg-"))  # in /tmp, which any user can traverse
    password = "pw-" + secrets.token_urlsafe(18)
    (root / "pwfile").write_text(password + "\n")
    if owner:
        for path in (root, root / "pwfile"):
            os.chown(path, *owner)
    run_as = {"user": owner[0], "group": owner[1], "extra_groups": []} if owner else {}
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")} | {"LC_ALL": "C", "LANG": "C"}

    def run(*args):
        result = subprocess.run(
            [str(bin_dir / args[0]), *args[1:]],
            cwd=root,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            **run_as,
        )
        if result.returncode != 0:
            raise RuntimeError(f"{args[0]} failed: {result.stdout[-2000:]} {result.stderr[-2000:]}")
        return result

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    data = root / "data"
    started = False
    try:
        run(
            "initdb",
            "-D",
            str(data),
            "-U",
            "civic",
            "--auth=scram-sha-256",
            f"--pwfile={root / 'pwfile'}",
            "-E",
            "UTF8",
            "--no-locale",
            "--no-sync",
            "--no-instructions",
        )
        (root / "pwfile").unlink()
        options = (
            f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c shared_preload_libraries=pg_stat_statements "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        )
        options += "".join(f" -c {name}={value}" for name, value in (settings or {}).items())
        run("pg_ctl", "-D", str(data), "-l", str(root / "server.log"), "-o", options, "-w", "-t", "60", "start")
        started = True
        import psycopg

        with psycopg.connect(
            host="127.0.0.1", port=port, user="civic", password=password, dbname="postgres", autocommit=True
        ) as conn:
            # Every database created from template1 (one per test) can read pg_stat_statements.
            with psycopg.connect(
                host="127.0.0.1", port=port, user="civic", password=password, dbname="template1", autocommit=True
            ) as template:
                template.execute("create extension if not exists pg_stat_statements")
            conn.execute(f'create database "{dbname}"')
        conn_json = json.dumps(
            {
                "conn_type": "postgres",
                "host": "127.0.0.1",
                "port": port,
                "login": "civic",
                "password": password,
                "schema": dbname,
            }
        )
        pid = int((data / "postmaster.pid").read_text().split()[0])
        yield {
            "host": "127.0.0.1",
            "port": port,
            "user": "civic",
            "password": password,
            "dbname": dbname,
            "conn_json": conn_json,
            "url": f"postgresql+psycopg2://civic:{password}@127.0.0.1:{port}/{dbname}",
            "root": root,
            "pid": pid,
        }
    finally:
        if started:
            subprocess.run(
                [str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"],
                cwd=root,
                env=env,
                capture_output=True,
                timeout=60,
                **run_as,
            )
        shutil.rmtree(root, ignore_errors=True)
