"""The one-member zip files and S3-style ETags the replay's download endpoints serve (CKAN's yearly
files, SRWR's exports): deterministic bytes for the same member, data and modification time."""

from __future__ import annotations

import datetime as _dt
import hashlib
import io
import zipfile


def etag_for(data: bytes) -> str:
    return '"' + hashlib.md5(data).hexdigest() + '"'


def build_zip(member: str, data: bytes, modified: _dt.datetime) -> bytes:
    """A deterministic zip with one deflated member (its time is the file's last_modified)."""
    buffer = io.BytesIO()
    info = zipfile.ZipInfo(
        member,
        date_time=(
            max(1980, modified.year),
            modified.month,
            modified.day,
            modified.hour,
            modified.minute,
            modified.second - modified.second % 2,
        ),
    )
    info.compress_type = zipfile.ZIP_DEFLATED
    info.external_attr = 0o644 << 16
    info.create_system = 0
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(info, data, compress_type=zipfile.ZIP_DEFLATED, compresslevel=6)
    return buffer.getvalue()
