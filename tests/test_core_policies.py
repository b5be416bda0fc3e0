"""The core's one retry policy: urllib3's retries and the loops a source runs itself read one backoff."""

from __future__ import annotations

from pathlib import Path

import pytest

from civic_pipelines import http

PACKAGE = Path(http.__file__).resolve().parent


def modules(exclude: tuple[str, ...] = ()):
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE).as_posix()
        if not relative.startswith(exclude):
            yield relative, path.read_text()


def test_one_backoff_drives_urllib3_and_the_sources_own_retries(monkeypatch):
    monkeypatch.setenv("CIVIC_HTTP_BACKOFF", "0.25")
    policy = http.retry_policy()
    assert policy.backoff_factor == 0.25
    assert policy.delay(0) == 0.25 and policy.delay(3) == 2.0
    assert policy.delay(10, cap=5.0) == 5.0 and policy.delay(20) == policy.backoff_max == 60.0
    assert policy.delay(2, scale=0.4, cap=10.0) == pytest.approx(0.4)  # Street Manager's resumed download
    with http.make_session() as session:
        retry = session.get_adapter("http://127.0.0.1").max_retries
    assert retry.backoff_factor == 0.25 and retry.backoff_max == 60.0
    monkeypatch.delenv("CIVIC_HTTP_BACKOFF")
    assert http.retry_policy().backoff_factor == http.DEFAULT_BACKOFF == 0.5


def test_no_module_reads_the_backoff_setting_but_the_policy():
    readers = [name for name, text in modules() if "CIVIC_HTTP_BACKOFF" in text or "_backoff_factor" in text]
    assert readers == ["http.py"]
