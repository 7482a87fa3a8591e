#!/usr/bin/env python3
"""Fuzz the NDJSON framer and the frame decoder: arbitrary bytes in arbitrary chunks.

The oracle, checked for every input under several frame limits and chunkings:

* :class:`~neocode_gateway.protocol.LineFramer` returns exactly the lines of a
  small reference model of the contract's framing (split on ``\\n``; blank lines
  skipped; a final unterminated line is a frame; a line longer than
  ``max_frame_bytes``, a trailing ``\\r`` excepted, overflows and ends the
  stream), whatever the chunking; after an overflow it returns nothing; it never
  holds more than ``max_frame_bytes + 1`` bytes (memory stays bounded).
* :func:`~neocode_gateway.protocol.parse_frame` returns a request frame with a
  known action, or raises :class:`~neocode_gateway.errors.FrameError` whose
  ``code`` is one of :data:`~neocode_gateway.protocol.ERROR_CODES`; no other
  exception escapes.
* Every reply (``encode_error`` of the error, or the dispatcher's answer to a
  valid frame) is one line of valid JSON: an ``ack`` or an ``error`` frame with
  a stable code that echoes the request's non-empty ``action``/``request_id``.

Usage::

    python tests/fuzz/fuzz_framer.py --seconds 60     # atheris if importable, else random loop
    python tests/fuzz/fuzz_framer.py --inputs 200000  # random-mutation loop, fixed count
    python tests/fuzz/fuzz_framer.py --no-atheris --seconds 30 --save-new /tmp/new-corpus

The CI test (``tests/chaos/test_fuzz.py``) calls :func:`run_random` in-process.
A failing input is written to ``--artifacts`` (default: ``$TMPDIR/ngw-fuzz-artifacts``)
and replayed with ``python tests/fuzz/fuzz_framer.py --replay FILE`` (``--strict``
to fail on the known defects too). Atheris keeps the inputs that reach new
coverage in ``$TMPDIR/ngw-fuzz-corpus`` (``--grow-corpus``: in ``corpus/``).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
import tracemalloc
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, cast

import msgspec

from neocode_gateway.dispatch import Dispatcher
from neocode_gateway.errors import FrameError
from neocode_gateway.protocol import (
    ACTION_SET,
    DEFAULT_MAX_FRAME_BYTES,
    ERROR_CODES,
    INVALID_FRAME,
    Frame,
    LineFramer,
    codes,
    encode_error,
    parse_frame,
)
from neocode_gateway.server import Connection

CORPUS_DIR: Final = Path(__file__).resolve().parent / "corpus"
_BLANKS: Final = b" \t\r"
#: Small frame limits exercise the overflow paths with short inputs.
_SMALL_LIMITS: Final = (1, 2, 3, 7, 16, 31, 64, 97)
#: Inputs the random loop builds stay below this size (the 1 MiB limit is probed separately).
MAX_INPUT_BYTES: Final = 16 * 1024
_DISPATCH: Final = Dispatcher()
_NO_CONN: Final = cast(Connection, None)  # the built-in handlers never touch the connection

# Tokens the mutator splices in: the contract's vocabulary and JSON edge cases.
TOKENS: Final[tuple[bytes, ...]] = (
    b"\n",
    b"\r\n",
    b"\r",
    b" ",
    b"\t",
    b"{",
    b"}",
    b"[",
    b"]",
    b'"',
    b"\\",
    b":",
    b",",
    b"null",
    b"true",
    b"false",
    b"0",
    b"-0",
    b"1e999",
    b"-1e-999",
    b"NaN",
    b"18446744073709551615",
    b"18446744073709551616",
    b"-9223372036854775809",
    b"123456789012345678901234567890",
    b'"\\u0000"',
    b'"\\ud800"',
    b'"\\udc00\\ud800"',
    b'"\\""',
    b"\xef\xbb\xbf",
    b"\xff",
    b"\xc3",
    b"\xe2\x80\xa8",
    b"\x00",
    b'"type"',
    b'"request"',
    b'"ack"',
    b'"event"',
    b'"error"',
    b'"action"',
    b'"ping"',
    b'"run"',
    b'"compact"',
    b'"cancel"',
    b'"list_sessions"',
    b'"load_session"',
    b'"resolve_permission"',
    b'"request_id"',
    b'"run_id"',
    b'"session_id"',
    b'"input_text"',
    b'"input_parts"',
    b'"text"',
    b'"image"',
    b'"media"',
    b'"uri"',
    b'"mime_type"',
    b'"file_name"',
    b'"workdir"',
    b'"payload"',
    b'"decision"',
    b'"allow_once"',
    b'"reject"',
    b'"code"',
    b'"message"',
    b'""',
    b'"   "',
)
_FRAME_TYPES: Final = ("request", "request", "request", "ack", "event", "error", "bogus", "")
_ACTIONS: Final = (*sorted(ACTION_SET), "", "  ", "nope", "PING")
_DECISIONS: Final = ("allow_once", "allow_session", "reject", "", "maybe")


class FuzzFinding(AssertionError):
    """An input broke the oracle; ``data`` is the input and ``detail`` what broke."""

    def __init__(self, detail: str, data: bytes = b"") -> None:
        super().__init__(detail)
        self.detail = detail
        self.data = data


@dataclass
class FuzzStats:
    """What a fuzzing run did; :meth:`as_dict` is the figure the suite records."""

    inputs: int = 0
    streams: int = 0
    lines: int = 0
    frames_ok: int = 0
    overflows: int = 0
    max_buffered: int = 0
    max_buffered_limit: int = 0
    slowest_input_s: float = 0.0
    codes: Counter[str] = field(default_factory=Counter)
    messages: Counter[str] = field(default_factory=Counter)
    new_outcomes: list[bytes] = field(default_factory=list)
    #: Names of :data:`KNOWN_DEFECTS` to count instead of failing on (empty: fail on all).
    tolerate: frozenset[str] = frozenset()
    known_defects: Counter[str] = field(default_factory=Counter)
    known_defect_examples: dict[str, bytes] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "inputs": self.inputs,
            "streams": self.streams,
            "lines": self.lines,
            "frames_ok": self.frames_ok,
            "overflows": self.overflows,
            "error_codes": dict(sorted(self.codes.items())),
            "distinct_messages": len(self.messages),
            "slowest_input_ms": round(self.slowest_input_s * 1000, 3),
            "known_defect_hits": dict(self.known_defects),
        }


# -- the oracle -------------------------------------------------------------------------


def _too_long(line: bytes, limit: int) -> bool:
    size = len(line)
    return size > limit and (size > limit + 1 or not line.endswith(b"\r"))


def model_lines(data: bytes, limit: int) -> tuple[list[bytes], bool]:
    """The contract's framing of a whole stream: (frame lines, whether it overflowed)."""
    parts = data.split(b"\n")
    tail = parts.pop()
    out: list[bytes] = []
    for line in parts:
        if _too_long(line, limit):
            return out, True
        if line.strip(_BLANKS):
            out.append(line)
    if _too_long(tail, limit):
        return out, True
    if tail.strip(_BLANKS):
        out.append(tail)
    return out, False


def _message_family(message: str) -> str:
    if message.startswith("invalid field "):
        return message.split(":", 1)[0]
    return message


def check_reply(reply: object) -> dict[str, Any]:
    """A reply must be one line of valid JSON: an ack, or an error with a stable code."""
    if not isinstance(reply, bytes):
        raise FuzzFinding(f"reply is {type(reply).__name__}, not bytes")
    if not reply.endswith(b"\n") or reply.count(b"\n") != 1:
        raise FuzzFinding(f"reply is not exactly one line: {reply[:200]!r}")
    try:
        obj = msgspec.json.decode(reply)
    except msgspec.DecodeError as exc:
        raise FuzzFinding(f"reply is not valid JSON ({exc}): {reply[:200]!r}") from None
    if not isinstance(obj, dict):
        raise FuzzFinding(f"reply is not a JSON object: {reply[:200]!r}")
    if obj.get("type") == "error":
        err = obj.get("error")
        if not isinstance(err, dict) or err.get("code") not in ERROR_CODES:
            raise FuzzFinding(f"error reply without a stable code: {reply[:200]!r}")
        if not isinstance(err.get("message"), str) or not err["message"]:
            raise FuzzFinding(f"error reply without a message: {reply[:200]!r}")
    elif obj.get("type") != "ack":
        raise FuzzFinding(f"reply is neither ack nor error: {reply[:200]!r}")
    return obj


def _raw_object(line: bytes) -> dict[str, Any] | None:
    try:
        value = msgspec.json.decode(line)
    except (msgspec.DecodeError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def _check_echo(reply: dict[str, Any], raw: dict[str, Any] | None, line: bytes) -> None:
    """An error frame echoes the request's non-empty string ``action`` and ``request_id``."""
    if raw is None:
        return
    for key in ("action", "request_id"):
        value = raw.get(key)
        if isinstance(value, str) and value and reply.get(key) != value:
            raise FuzzFinding(
                f"reply does not echo {key}={value!r}: {reply!r} for {line[:200]!r}", line
            )


#: Daemon defects this harness knows about, by name: a predicate on the escaped
#: exception. A run tolerates the names in ``FuzzStats.tolerate`` (counting them)
#: so that CI keeps fuzzing for new defects until these are fixed; each one is
#: pinned by a strict xfail test in tests/chaos/test_fuzz.py. Remove an entry
#: together with its xfail marker once the fix is in.
KNOWN_DEFECTS: Final[dict[str, Callable[[BaseException], bool]]] = {
    # None open. D1 (UnicodeDecodeError after a type error) was fixed in parse_frame.
}


def _parse(line: bytes, stats: FuzzStats) -> Frame:
    try:
        return parse_frame(line)
    except FrameError:
        raise
    except Exception as exc:
        for name in stats.tolerate:
            if KNOWN_DEFECTS[name](exc):
                stats.known_defects[name] += 1
                stats.known_defect_examples.setdefault(name, line)
                # What the fixed gateway answers: the contract's invalid-json error.
                raise FrameError(INVALID_FRAME, codes.MSG_INVALID_JSON, fatal=True) from exc
        raise FuzzFinding(f"{type(exc).__name__} escaped parse_frame: {exc}", line) from exc


def check_line(line: bytes, stats: FuzzStats) -> None:
    """Decode one frame line and check the reply the gateway would send for it."""
    stats.lines += 1
    try:
        frame = _parse(line, stats)
    except FrameError as err:
        if err.code not in ERROR_CODES:
            raise FuzzFinding(f"FrameError with unknown code {err.code!r}", line) from None
        if not isinstance(err.message, str) or not err.message:
            raise FuzzFinding(f"FrameError without a message: {err!r}", line) from None
        reply = check_reply(
            encode_error(err.code, err.message, action=err.action, request_id=err.request_id)
        )
        if err.message != codes.MSG_INVALID_JSON:
            _check_echo(reply, _raw_object(line), line)
        stats.codes[err.code] += 1
        family = _message_family(err.message)
        if family not in stats.messages:
            stats.new_outcomes.append(line)
        stats.messages[family] += 1
        return
    if frame.type != "request" or frame.action not in ACTION_SET:
        raise FuzzFinding(f"parse_frame accepted a non-request frame: {frame!r}", line)
    result = _DISPATCH(frame, _NO_CONN)
    reply = check_reply(result)
    if frame.action == "ping":
        payload = reply.get("payload")
        if reply.get("type") != "ack" or payload != {"message": "pong"}:
            raise FuzzFinding(f"ping answered with {reply!r}", line)
        if reply.get("request_id") != (frame.request_id or None):
            raise FuzzFinding(f"ping reply does not echo request_id: {reply!r}", line)
    else:
        error = reply.get("error")
        if not isinstance(error, dict) or error.get("code") != "unsupported_action":
            raise FuzzFinding(f"{frame.action} answered with {reply!r}", line)
        _check_echo(reply, _raw_object(line), line)
        stats.codes["unsupported_action"] += 1
    stats.frames_ok += 1
    if "ok:" + str(frame.action) not in stats.messages:
        stats.new_outcomes.append(line)
    stats.messages["ok:" + str(frame.action)] += 1


def check_stream(
    data: bytes,
    limit: int,
    cuts: Iterable[int],
    stats: FuzzStats,
    checked: set[bytes] | None = None,
) -> None:
    """Feed ``data`` cut at ``cuts`` to a framer of ``limit``; check it against the model."""
    stats.streams += 1
    framer = LineFramer(limit)
    bound = limit + 1
    got: list[bytes] = []
    pos = 0
    for cut in (*cuts, len(data)):
        was_overflowed = framer.overflowed
        out = framer.feed(data[pos:cut])
        pos = cut
        if was_overflowed and out:
            raise FuzzFinding("framer returned lines after overflowing", data)
        buffered = framer.buffered
        if buffered > bound:
            raise FuzzFinding(f"framer holds {buffered} bytes, limit {limit}", data)
        if buffered > stats.max_buffered:
            stats.max_buffered = buffered
            stats.max_buffered_limit = limit
        got.extend(out)
    last = framer.feed_eof()
    if last is not None:
        got.append(last)
    want, overflowed = model_lines(data, limit)
    if got != want or framer.overflowed != overflowed:
        raise FuzzFinding(
            f"framer (limit {limit}, cuts {list(cuts)[:20]}) gave {got[:5]!r} "
            f"overflowed={framer.overflowed}; the model gives {want[:5]!r} "
            f"overflowed={overflowed}",
            data,
        )
    if overflowed:
        stats.overflows += 1
    for line in got:
        if b"\n" in line or len(line) > bound:
            raise FuzzFinding(f"framer returned a bad line {line[:100]!r}", data)
        if checked is not None:
            if line in checked:
                continue
            checked.add(line)
        check_line(line, stats)


def _cuts(rng: random.Random, size: int) -> list[int]:
    if size < 2:
        return []
    count = rng.randint(1, min(size - 1, 12))
    return sorted(rng.sample(range(1, size), count))


def check_input(data: bytes, stats: FuzzStats) -> None:
    """Every check for one input: whole, randomly chunked, and under a small limit.

    Deterministic (the chunking is seeded by the input's CRC), so a finding replays.
    """
    started = time.perf_counter()
    stats.inputs += 1
    rng = random.Random(zlib.crc32(data))
    checked: set[bytes] = set()
    check_stream(data, DEFAULT_MAX_FRAME_BYTES, (), stats, checked)
    check_stream(data, DEFAULT_MAX_FRAME_BYTES, _cuts(rng, len(data)), stats, checked)
    small = _SMALL_LIMITS[rng.randrange(len(_SMALL_LIMITS))]
    byte_cuts: Iterable[int] = range(1, len(data)) if len(data) <= 256 else _cuts(rng, len(data))
    check_stream(data, small, byte_cuts, stats, checked)
    elapsed = time.perf_counter() - started
    stats.slowest_input_s = max(stats.slowest_input_s, elapsed)


# -- inputs -----------------------------------------------------------------------------


def load_corpus(directory: Path = CORPUS_DIR) -> list[bytes]:
    """The seed inputs kept in the repository (one raw byte stream per file)."""
    if not directory.is_dir():
        return [b'{"type":"request","action":"ping","request_id":"smoke-1"}\n']
    return [p.read_bytes() for p in sorted(directory.iterdir()) if p.is_file()]


def _rand_text(rng: random.Random) -> Any:
    return rng.choice(("", "  ", "x", "hello", "é\u2028\U0001f600", "a" * rng.randint(1, 40)))


def _rand_value(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.randrange(9 if depth < 3 else 6)
    if kind == 0:
        return None
    if kind == 1:
        return rng.choice((True, False))
    if kind == 2:
        return rng.choice((0, -1, 2**63 - 1, 2**64 - 1, 2**64, -(2**63) - 1, 1.5, 1e300))
    if kind in (3, 4, 5):
        return _rand_text(rng)
    if kind == 6:
        return [_rand_value(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    return {rng.choice(("type", "text", "uri", "k")): _rand_value(rng, depth + 1)}


def _rand_part(rng: random.Random) -> Any:
    roll = rng.randrange(10)
    if roll < 4:
        return {"type": "text", "text": _rand_text(rng)}
    if roll < 8:
        media: dict[str, Any] = {}
        for key in ("uri", "mime_type", "file_name"):
            if rng.random() < 0.7:
                media[key] = _rand_text(rng) if rng.random() < 0.9 else _rand_value(rng, 2)
        part: dict[str, Any] = {"type": "image"}
        if rng.random() < 0.85:
            part["media"] = media if rng.random() < 0.9 else _rand_value(rng, 2)
        return part
    return rng.choice(({"type": "audio"}, {"text": "x"}, _rand_value(rng, 2)))


def random_frame(rng: random.Random) -> dict[str, Any]:
    """A frame-shaped object: mostly the right keys, often the right types, never guaranteed."""
    frame: dict[str, Any] = {}
    if rng.random() < 0.95:
        frame["type"] = rng.choice(_FRAME_TYPES) if rng.random() < 0.95 else _rand_value(rng)
    if rng.random() < 0.9:
        frame["action"] = rng.choice(_ACTIONS) if rng.random() < 0.95 else _rand_value(rng)
    if rng.random() < 0.7:
        frame["request_id"] = _rand_text(rng) if rng.random() < 0.9 else _rand_value(rng)
    for key in ("run_id", "session_id", "input_text", "workdir"):
        if rng.random() < 0.3:
            frame[key] = _rand_text(rng) if rng.random() < 0.85 else _rand_value(rng)
    if rng.random() < 0.35:
        frame["input_parts"] = (
            [_rand_part(rng) for _ in range(rng.randint(0, 3))]
            if rng.random() < 0.9
            else _rand_value(rng)
        )
    if rng.random() < 0.4:
        if rng.random() < 0.7:
            payload: dict[str, Any] = {}
            if rng.random() < 0.8:
                payload["request_id"] = _rand_text(rng) if rng.random() < 0.9 else 7
            if rng.random() < 0.8:
                payload["decision"] = rng.choice(_DECISIONS) if rng.random() < 0.9 else []
            frame["payload"] = payload
        else:
            frame["payload"] = _rand_value(rng)
    if rng.random() < 0.05:
        frame["error"] = {"code": _rand_value(rng), "message": "m"}
    if rng.random() < 0.1:
        frame["unknown_field"] = _rand_value(rng)
    return frame


def _encode_frames(rng: random.Random, frames: Sequence[dict[str, Any]]) -> bytes:
    out = []
    for frame in frames:
        if rng.random() < 0.5:
            text = msgspec.json.encode(frame)
        else:
            text = json.dumps(frame, separators=rng.choice(((",", ":"), (", ", ": ")))).encode()
        out.append(rng.choice((b"", b" ", b"\t")) + text + rng.choice((b"", b" ", b"\r")))
    sep = rng.choice((b"\n", b"\r\n", b"\n\n", b"\n \n"))
    tail = rng.choice((b"\n", b"", b"\r\n"))
    return sep.join(out) + tail


def mutate(rng: random.Random, data: bytes, corpus: Sequence[bytes]) -> bytes:
    """One to four byte-level mutations of ``data`` (bounded by :data:`MAX_INPUT_BYTES`)."""
    buf = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(10)
        size = len(buf)
        pos = rng.randint(0, size)
        if op == 0 and size:
            at = rng.randrange(size)
            buf[at] ^= 1 << rng.randrange(8)
        elif op == 1 and size:
            buf[rng.randrange(size)] = rng.choice(b'\n\r\t {}[]":,\\0a\x00\xff\xc3')
        elif op == 2:
            buf[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
        elif op == 3 and size:
            end = min(size, pos + rng.randint(1, 32))
            del buf[pos:end]
        elif op == 4 and size:
            start = rng.randrange(size)
            piece = buf[start : start + rng.randint(1, 64)]
            buf[pos:pos] = piece * rng.randint(1, 4)
        elif op == 5:
            buf[pos:pos] = rng.choice(corpus)
        elif op == 6:
            other = rng.choice(corpus)
            buf = buf[:pos] + other[rng.randint(0, len(other)) :]
        elif op == 7:
            run = rng.choice((2, 63, 64, 65, 66, 130, 1000))
            buf[pos:pos] = bytes([rng.choice(b'[{"\\ 0\n\r')]) * run
        else:
            buf[pos:pos] = rng.choice(TOKENS)
    return bytes(buf[:MAX_INPUT_BYTES])


def next_input(rng: random.Random, pool: list[bytes], corpus: Sequence[bytes]) -> bytes:
    """The random loop's next input: a generated frame batch, or a mutant of the pool."""
    roll = rng.random()
    if roll < 0.25:
        data = _encode_frames(rng, [random_frame(rng) for _ in range(rng.randint(1, 4))])
        return mutate(rng, data, corpus) if rng.random() < 0.3 else data
    if roll < 0.3:
        return bytes(rng.randrange(256) for _ in range(rng.randint(0, 64)))
    return mutate(rng, rng.choice(pool), corpus)


def run_random(
    *,
    inputs: int | None = None,
    seconds: float | None = None,
    seed: int = 0,
    corpus: Sequence[bytes] | None = None,
    stats: FuzzStats | None = None,
    on_input: Callable[[bytes], None] | None = None,
) -> FuzzStats:
    """The random-mutation loop: ``inputs`` inputs, or as many as fit in ``seconds``.

    Inputs that reach an outcome not seen before join the mutation pool (a cheap
    stand-in for coverage feedback). Raises :class:`FuzzFinding` on the first failure.
    """
    if inputs is None and seconds is None:
        raise ValueError("give inputs or seconds")
    seeds = list(corpus if corpus is not None else load_corpus())
    stats = stats or FuzzStats()
    rng = random.Random(seed)
    pool = list(seeds)
    deadline = time.monotonic() + seconds if seconds is not None else float("inf")
    done = 0
    for data in seeds:
        _checked(data, stats)
    while (inputs is None or done < inputs) and (done % 256 or time.monotonic() < deadline):
        data = next_input(rng, pool, seeds)
        before = len(stats.new_outcomes)
        _checked(data, stats)
        if len(stats.new_outcomes) != before:
            pool.append(data)
            if on_input is not None:
                on_input(data)
        done += 1
    return stats


def _checked(data: bytes, stats: FuzzStats) -> None:
    try:
        check_input(data, stats)
    except FuzzFinding as finding:
        finding.data = data
        raise
    except Exception as exc:
        raise FuzzFinding(f"{type(exc).__name__} escaped: {exc}", data) from exc


def memory_probe(megabytes: int = 32, chunk: int = 65536) -> dict[str, int]:
    """Feed a default framer ``megabytes`` of one endless line and of many lines.

    Returns the tracemalloc peak (bytes) of each: bounded by the frame limit,
    whatever the stream's length.
    """
    figures: dict[str, int] = {}
    endless = b"x" * chunk
    lines = (b'{"type":"request","action":"ping"}\n' * (chunk // 35 + 1))[:chunk]
    for name, block in (("endless_line", endless), ("many_lines", lines)):
        framer = LineFramer(DEFAULT_MAX_FRAME_BYTES)
        tracemalloc.start()
        try:
            for _ in range(megabytes * (1 << 20) // chunk):
                framer.feed(block)
                if framer.overflowed:
                    framer = LineFramer(DEFAULT_MAX_FRAME_BYTES)  # a new connection, same size
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        figures[f"{name}_peak_bytes"] = peak
    return figures


# -- command line -----------------------------------------------------------------------


def _save(directory: Path, data: bytes, prefix: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{prefix}-{zlib.crc32(data):08x}"
    path.write_bytes(data)
    return path


def _run_atheris(
    seconds: float, artifacts: Path, grow_corpus: bool, extra: list[str], stats: FuzzStats
) -> int:
    import atheris

    def one_input(data: bytes) -> None:
        check_input(data, stats)

    atheris.instrument_all()
    artifacts.mkdir(parents=True, exist_ok=True)
    # libFuzzer adds the inputs that reach new coverage to its first directory: a
    # working corpus reused from run to run, unless asked to grow the repository's.
    workdir = CORPUS_DIR if grow_corpus else Path(tempfile.gettempdir()) / "ngw-fuzz-corpus"
    workdir.mkdir(parents=True, exist_ok=True)
    print(f"atheris: new inputs go to {workdir}, findings to {artifacts}", flush=True)
    args = [
        sys.argv[0],
        f"-max_total_time={max(1, int(seconds))}",
        "-rss_limit_mb=2048",
        f"-max_len={MAX_INPUT_BYTES}",
        "-print_final_stats=1",
        f"-artifact_prefix={artifacts}/",
        *extra,
        str(workdir),
    ]
    if workdir != CORPUS_DIR:
        args.append(str(CORPUS_DIR))
    atheris.Setup(args, one_input)
    atheris.Fuzz()  # exits the process when the time is up or on a finding
    return 0  # pragma: no cover - atheris.Fuzz does not return


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=None, help="fuzz for this long")
    parser.add_argument("--inputs", type=int, default=None, help="random loop: this many inputs")
    parser.add_argument("--seed", type=int, default=None, help="random loop seed (default: time)")
    parser.add_argument("--no-atheris", action="store_true", help="use the random loop")
    parser.add_argument("--artifacts", type=Path, default=None, help="where findings go")
    parser.add_argument("--save-new", type=Path, default=None, help="save new-outcome inputs")
    parser.add_argument("--grow-corpus", action="store_true", help="atheris: add to corpus/")
    parser.add_argument("--replay", type=Path, nargs="*", default=[], help="check these files")
    parser.add_argument(
        "--strict", action="store_true", help="fail on the KNOWN_DEFECTS too (default: count them)"
    )
    options, extra = parser.parse_known_args(argv)
    artifacts: Path = options.artifacts or Path(tempfile.gettempdir()) / "ngw-fuzz-artifacts"
    stats = FuzzStats(tolerate=frozenset() if options.strict else frozenset(KNOWN_DEFECTS))

    if options.replay:
        for path in options.replay:
            _checked(path.read_bytes(), stats)
        print(json.dumps(stats.as_dict()))
        return 0

    probe = memory_probe()
    print(f"memory probe (tracemalloc peak, 32 MiB fed): {json.dumps(probe)}", flush=True)
    if options.inputs is None and options.seconds is None:
        options.seconds = 60.0

    if options.inputs is None and not options.no_atheris:
        try:
            import atheris  # noqa: F401
        except ImportError:
            print("atheris is not importable: falling back to the random-mutation loop")
        else:
            print(f"atheris: fuzzing for {options.seconds:g}s")
            return _run_atheris(options.seconds, artifacts, options.grow_corpus, extra, stats)

    seed = options.seed if options.seed is not None else int.from_bytes(os.urandom(4), "big")
    on_input = None
    if options.save_new is not None:
        target: Path = options.save_new

        def on_input(data: bytes) -> None:
            _save(target, data, "new")

    started = time.monotonic()
    try:
        run_random(
            inputs=options.inputs,
            seconds=options.seconds,
            seed=seed,
            stats=stats,
            on_input=on_input,
        )
    except FuzzFinding as finding:
        path = _save(artifacts, finding.data, "crash")
        print(f"FINDING (seed {seed}): {finding.detail}\ninput saved to {path}", file=sys.stderr)
        return 1
    elapsed = time.monotonic() - started
    figures = stats.as_dict()
    figures.update(seed=seed, seconds=round(elapsed, 1), per_second=int(stats.inputs / elapsed))
    print(json.dumps(figures))
    for name, example in stats.known_defect_examples.items():
        print(f"known defect {name} still present, e.g. {example[:120]!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
