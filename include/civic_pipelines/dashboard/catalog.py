"""The dbt project as the dashboard shows it: each model's description and columns (from dbt's
manifest.json), and the latest result of each dbt test (from run_results.json files).

Both files are re-read only when they change (by modification time).
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Model:
    name: str
    description: str
    columns: dict[str, str]
    tags: tuple[str, ...]
    materialized: str
    path: str
    depends_on: tuple[str, ...]

    @property
    def summary(self) -> str:
        """The description's first sentence (the chart caption); the model page has it all."""
        text = " ".join(self.description.split())
        if not text:
            return ""
        end = text.find(". ")
        return text if end < 0 else text[: end + 1]


@dataclass
class TestResult:
    unique_id: str
    name: str
    status: str  # pass, warn, fail, error, skipped
    failures: int | None
    message: str | None
    generated_at: str
    models: tuple[str, ...] = ()
    tags: frozenset[str] = field(default_factory=frozenset)


_UNSET = object()


class _Cached:
    def __init__(self):
        self._lock = threading.Lock()
        self._key = _UNSET
        self._value = None

    def get(self, key, load):
        with self._lock:
            if key != self._key:
                self._value, self._key = load(), key
            return self._value


def _mtime(path: Path):
    try:
        return path.stat().st_mtime_ns
    except OSError:
        return None


class Catalog:
    def __init__(self, manifest: Path, run_results: Path):
        self.manifest_path = manifest
        self.run_results_path = run_results
        self._manifest = _Cached()
        self._results = _Cached()

    # -- models ------------------------------------------------------------------------------

    def _load_models(self) -> dict[str, Model]:
        try:
            manifest = json.loads(self.manifest_path.read_text())
        except (OSError, ValueError):
            return {}
        models = {}
        for node in manifest.get("nodes", {}).values():
            if node.get("resource_type") not in ("model", "seed"):
                continue
            models[node["name"]] = Model(
                name=node["name"],
                description=node.get("description") or "",
                columns={c: (v.get("description") or "") for c, v in (node.get("columns") or {}).items()},
                tags=tuple(node.get("tags") or ()),
                materialized=(node.get("config") or {}).get("materialized", ""),
                path=node.get("original_file_path", ""),
                depends_on=tuple(d.split(".")[-1] for d in (node.get("depends_on") or {}).get("nodes", [])),
            )
        self._tests = {
            uid: node for uid, node in manifest.get("nodes", {}).items() if node.get("resource_type") == "test"
        }
        return models

    def models(self) -> dict[str, Model]:
        return self._manifest.get(_mtime(self.manifest_path), self._load_models)

    def model(self, name: str) -> Model | None:
        return self.models().get(name)

    def _test_nodes(self) -> dict:
        self.models()
        return getattr(self, "_tests", {})

    # -- tests -------------------------------------------------------------------------------

    def _result_files(self) -> list[Path]:
        path = self.run_results_path
        if path.is_dir():
            return sorted(path.rglob("run_results.json"), key=_mtime)
        return [path] if path.is_file() else []

    def _load_results(self) -> dict[str, TestResult]:
        models = self.models()
        tests = self._test_nodes()
        latest: dict[str, TestResult] = {}
        for file in self._result_files():  # oldest first: a newer file's result replaces an older one
            try:
                payload = json.loads(file.read_text())
            except (OSError, ValueError):
                continue
            generated = (payload.get("metadata") or {}).get("generated_at", "")
            for result in payload.get("results", []):
                uid = result.get("unique_id", "")
                if not uid.startswith("test."):
                    continue
                node = tests.get(uid, {})
                upstream = tuple(
                    d.split(".")[-1]
                    for d in (node.get("depends_on") or {}).get("nodes", [])
                    if d.startswith(("model.", "seed."))
                )
                tags = frozenset(t for m in upstream if m in models for t in models[m].tags)
                latest[uid] = TestResult(
                    unique_id=uid,
                    name=node.get("name") or uid.split(".")[2],
                    status=str(result.get("status")),
                    failures=result.get("failures"),
                    message=result.get("message"),
                    generated_at=generated,
                    models=upstream,
                    tags=tags,
                )
        return latest

    def test_results(self) -> dict[str, TestResult]:
        key = (_mtime(self.manifest_path), tuple((str(p), _mtime(p)) for p in self._result_files()))
        return self._results.get(key, self._load_results)
