"""The NDJSON framer, fed whole, byte by byte, with trailing data, and in any chunking."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from neocode_gateway.protocol import DEFAULT_MAX_FRAME_BYTES, LineFramer


def feed_all(framer: LineFramer, chunks: list[bytes]) -> list[bytes]:
    out: list[bytes] = []
    for chunk in chunks:
        out.extend(framer.feed(chunk))
    return out


def test_whole_lines() -> None:
    framer = LineFramer()
    assert framer.feed(b'{"a":1}\n{"b":2}\n') == [b'{"a":1}', b'{"b":2}']
    assert framer.buffered == 0


def test_byte_by_byte() -> None:
    data = b'{"a":1}\r\n{"b":2}\n'
    framer = LineFramer()
    assert feed_all(framer, [data[i : i + 1] for i in range(len(data))]) == [
        b'{"a":1}\r',
        b'{"b":2}',
    ]


def test_trailing_partial_line_waits_then_completes() -> None:
    framer = LineFramer()
    assert framer.feed(b'{"a":1}\n{"b"') == [b'{"a":1}']
    assert framer.buffered == 4
    assert framer.feed(b":2}\n") == [b'{"b":2}']


def test_final_line_without_newline_is_a_frame_at_eof() -> None:
    framer = LineFramer()
    assert framer.feed(b'{"a":1}') == []
    assert framer.feed_eof() == b'{"a":1}'
    assert framer.feed_eof() is None


def test_blank_lines_are_skipped() -> None:
    framer = LineFramer()
    assert framer.feed(b"\n  \n\r\n\t\n" + b'{"a":1}\n') == [b'{"a":1}']
    framer.feed(b"   ")
    assert framer.feed_eof() is None


def test_line_at_the_limit_is_accepted_with_either_terminator() -> None:
    framer = LineFramer(8)
    assert framer.feed(b"12345678\n") == [b"12345678"]
    assert framer.feed(b"12345678\r\n") == [b"12345678\r"]
    assert not framer.overflowed


def test_line_over_the_limit_overflows_and_earlier_lines_survive() -> None:
    framer = LineFramer(8)
    assert framer.feed(b"1\n123456789\n2\n") == [b"1"]
    assert framer.overflowed
    assert framer.feed(b"3\n") == []
    assert framer.feed_eof() is None


def test_partial_line_over_the_limit_overflows_before_the_newline() -> None:
    framer = LineFramer(8)
    assert framer.feed(b"1234") == []
    assert not framer.overflowed
    framer.feed(b"123456")
    assert framer.overflowed
    assert framer.buffered == 0  # memory released at once


def test_limit_plus_carriage_return_is_not_yet_overflow() -> None:
    framer = LineFramer(4)
    assert framer.feed(b"1234\r") == []
    assert not framer.overflowed
    assert framer.feed(b"\n") == [b"1234\r"]


def test_limit_plus_other_byte_at_eof_overflows() -> None:
    framer = LineFramer(4)
    framer.feed(b"12345")
    assert framer.feed_eof() is None
    assert framer.overflowed


def test_bad_limit() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        LineFramer(0)


def test_default_limit_is_one_mebibyte() -> None:
    assert LineFramer().max_frame_bytes == DEFAULT_MAX_FRAME_BYTES == 1048576


lines_strategy = st.lists(
    st.binary(max_size=40).map(lambda b: b.replace(b"\n", b"")), min_size=0, max_size=20
)


@given(lines=lines_strategy, cuts=st.lists(st.integers(min_value=0, max_value=2000), max_size=30))
def test_any_chunking_yields_the_same_frames(lines: list[bytes], cuts: list[int]) -> None:
    data = b"".join(line + b"\n" for line in lines)
    whole = LineFramer(64)
    expected = whole.feed(data)
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    chunks = [data[a:b] for a, b in itertools.pairwise(points)]
    chunked = LineFramer(64)
    assert feed_all(chunked, chunks) == expected
    assert expected == [line for line in lines if line.strip(b" \t\r")]


@given(data=st.binary(max_size=300), size=st.integers(min_value=1, max_value=50))
def test_buffer_never_exceeds_limit(data: bytes, size: int) -> None:
    framer = LineFramer(size)
    for i in range(0, len(data), 7):
        for line in framer.feed(data[i : i + 7]):
            assert len(line) <= size + 1
        assert framer.buffered <= size + 1
