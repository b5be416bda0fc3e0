"""The one forward zip reader (civic_pipelines.core.zipstream) on zips written by Python's zipfile:
sizes in the header, in a zip64 extra field or in a data descriptor; stored and deflated; cut,
damaged and stray bytes; read whole and in pieces. The sources' own tests cover DfT's archives
(broken central directory) and the CKAN and SRWR downloads."""

from __future__ import annotations

import io
import struct
import zipfile

import pytest

from civic_pipelines.core.zipstream import (
    FirstMatch,
    ZipCorrupt,
    ZipErrors,
    ZipStream,
    ZipTruncated,
    ZipUnsupported,
    zip64_sizes,
)

BODIES = [(f"events/{i:03d}.json", (b'{"n": %d, "text": "' % i) + b"x" * (i * 37 % 5000) + b'"}') for i in range(60)]


class _Unseekable(io.RawIOBase):
    """A write-only stream: zipfile then puts each member's sizes in a data descriptor."""

    def __init__(self) -> None:
        self.data = bytearray()

    def writable(self) -> bool:
        return True

    def write(self, b) -> int:
        self.data += b
        return len(b)


def make_zip(members, compression=zipfile.ZIP_DEFLATED, descriptors=False, zip64=False) -> bytes:
    target = _Unseekable() if descriptors else io.BytesIO()
    with zipfile.ZipFile(target, "w", compression) as archive:
        for name, body in members:
            if zip64:
                with archive.open(name, "w", force_zip64=True) as handle:
                    handle.write(body)
            else:
                archive.writestr(name, body)
    return bytes(target.data) if descriptors else target.getvalue()


def in_pieces(data: bytes, size: int):
    return (data[i : i + size] for i in range(0, len(data), size))


# (a stored member with a data descriptor cannot be read forward: it is refused, see below)
@pytest.mark.parametrize(
    "compression, layout",
    [
        (zipfile.ZIP_DEFLATED, "header"),
        (zipfile.ZIP_STORED, "header"),
        (zipfile.ZIP_DEFLATED, "descriptor"),
        (zipfile.ZIP_DEFLATED, "zip64"),
        (zipfile.ZIP_STORED, "zip64"),
    ],
)
@pytest.mark.parametrize("piece", [1, 997, 1 << 20])
def test_every_member_is_read_whole_exactly_and_the_directory_is_not_read(compression, layout, piece):
    data = make_zip(BODIES, compression, descriptors=layout == "descriptor", zip64=layout == "zip64")
    stream = ZipStream(in_pieces(data, piece))
    got = [(name.decode(), body, problem) for name, body, problem in stream.whole_members()]
    assert got == [(name, body, None) for name, body in BODIES]
    assert stream.complete and stream.entries == len(BODIES)
    assert stream.descriptor_members == (len(BODIES) if layout == "descriptor" else 0)
    directory = data.find(b"PK\x01\x02")
    assert directory <= stream.pulled <= directory + max(piece, 30)  # stopped at the central directory


@pytest.mark.parametrize("layout", ["header", "descriptor", "zip64"])
def test_the_first_matching_member_streams_in_bounded_pieces_after_the_others_are_checked(layout):
    big = b"id,text\n" + b"".join(b"%d,row %d\n" % (i, i) for i in range(200_000))
    data = make_zip(
        [("readme.txt", b"not this " * 3000), ("SR2024.csv", big), ("later.csv", b"never read")],
        descriptors=layout == "descriptor",
        zip64=layout == "zip64",
    )
    member = FirstMatch(in_pieces(data, 4096), r"(?i)\.csv$", piece_size=64 << 10)
    pieces = list(member)
    assert b"".join(pieces) == big and max(map(len, pieces)) <= 64 << 10
    assert member.name == "SR2024.csv" and member.skipped == ["readme.txt"] and member.size == len(big)


def test_a_stream_cut_inside_a_member_or_between_members_is_truncated():
    data = make_zip(BODIES)
    with pytest.raises(ZipTruncated, match=r"cut short inside member \d+ \(events/\d+\.json\).*truncated"):
        list(ZipStream([data[: len(data) // 2]]).whole_members())
    members_only = data[: data.find(b"PK\x01\x02")]
    with pytest.raises(ZipTruncated, match="ends after .* and 60 members, before its central directory"):
        list(ZipStream(in_pieces(members_only, 1000)).whole_members())
    with pytest.raises(ZipTruncated, match="cut short"):
        b"".join(FirstMatch([data[: len(data) // 2]], r"059\.json$"))


def test_damaged_bytes_and_stray_bytes_are_corrupt():
    data = bytearray(make_zip(BODIES[:3]))
    second = data.find(b"PK\x03\x04", 4)
    data[second + 14 : second + 18] = b"\0\0\0\0"  # the second member's CRC-32
    with pytest.raises(ZipCorrupt, match=r"member 2 \(events/001.json\) fails its CRC-32/size check.*damaged"):
        list(ZipStream([bytes(data)]).whole_members())
    data = bytearray(make_zip(BODIES[:3]))
    name_len = struct.unpack_from("<H", data, second + 26)[0]
    data[second + 30 + name_len : second + 38 + name_len] = b"\xff" * 8  # its deflate data
    with pytest.raises(ZipCorrupt, match=r"member 2 \(events/001.json\) (does not inflate|fails its CRC-32)"):
        list(ZipStream(in_pieces(bytes(data), 50)).whole_members())
    whole = make_zip(BODIES[:3])
    stray = whole[:second] + b"\0" * 40 + whole[second:]
    with pytest.raises(ZipCorrupt, match="neither a member nor the central directory"):
        list(ZipStream([stray]).whole_members())


def test_members_that_cannot_be_read_are_set_aside_whole_and_refused_streamed():
    data = bytearray(make_zip(BODIES[:2], zipfile.ZIP_STORED))
    data[6] |= 0x01  # the first member says it is encrypted
    got = list(ZipStream([bytes(data)]).whole_members())
    assert [(n.decode(), b, p) for n, b, p in got] == [
        ("events/000.json", b"", "member is encrypted"),
        (BODIES[1][0], BODIES[1][1], None),
    ]
    with pytest.raises(ZipUnsupported, match="encrypted"):
        b"".join(FirstMatch([bytes(data)], r"\.json$"))
    stored_streamed = make_zip(BODIES[:1], zipfile.ZIP_STORED, descriptors=True)
    with pytest.raises(ZipUnsupported, match="cannot be read forward"):
        list(ZipStream([stored_streamed]).whole_members())


def test_the_caller_chooses_the_errors_and_a_missing_member_is_the_callers_too():
    class Cut(Exception):
        pass

    class Missing(Exception):
        pass

    data = make_zip(BODIES[:2])
    with pytest.raises(Cut):
        list(ZipStream([data[:100]], ZipErrors(truncated=Cut)).whole_members())
    with pytest.raises(Missing, match=r"no zip member matches .* \(members: events/000.json, events/001.json\)"):
        b"".join(FirstMatch([data], r"\.csv$", no_match=Missing))


def test_zip64_sizes_are_read_from_the_extra_field():
    extra = struct.pack("<HH", 0x7875, 3) + b"abc" + struct.pack("<HHQQ", 0x0001, 16, 5_000_000_000, 4_000_000_000)
    assert zip64_sizes(extra) == (5_000_000_000, 4_000_000_000)
    assert zip64_sizes(struct.pack("<HH", 0x7875, 3) + b"abc") is None
