"""Incremental NDJSON framing over bytes: a sans-I/O line reader with a size limit.

The asyncio layer only feeds it (:meth:`LineFramer.feed`, :meth:`LineFramer.feed_eof`);
it never touches a socket, so it is tested byte by byte, whole and with trailing
data. Memory is bounded: a partial line is never kept beyond the frame limit.
"""

from __future__ import annotations

from typing import Final

from neocode_gateway.limits import DEFAULT_MAX_FRAME_BYTES

__all__ = ["DEFAULT_MAX_FRAME_BYTES", "LineFramer"]
_BLANKS: Final = b" \t\r"


class LineFramer:
    """Split a byte stream into frame lines.

    :meth:`feed` returns the complete, non-blank lines that ``data`` finished,
    in order, without their ``\\n`` (a ``\\r`` before it is left for the JSON
    decoder, which treats it as whitespace). When a line is longer than
    ``max_frame_bytes``, :attr:`overflowed` becomes true: the lines before it
    are still returned, everything from it on is discarded, and the caller is
    expected to send the error frame and close.
    """

    __slots__ = ("_partial", "max_frame_bytes", "overflowed")

    def __init__(self, max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES) -> None:
        if max_frame_bytes < 1:
            raise ValueError("max_frame_bytes must be at least 1")
        self.max_frame_bytes = max_frame_bytes
        #: An incomplete line, only while there is one (an idle connection holds no buffer).
        self._partial: bytearray | None = None
        self.overflowed = False

    @property
    def buffered(self) -> int:
        """Bytes of an incomplete line held so far."""
        return len(self._partial) if self._partial is not None else 0

    def _too_long(self, line: bytes | bytearray) -> bool:
        size = len(line)
        if size <= self.max_frame_bytes:
            return False
        # A line may carry one extra byte, the "\r" of a "\r\n" terminator.
        return size > self.max_frame_bytes + 1 or line[-1:] != b"\r"

    def feed(self, data: bytes) -> list[bytes]:
        """Consume ``data``; return the complete non-blank lines it ends."""
        if self.overflowed:
            return []
        lines = data.split(b"\n")
        tail = lines.pop()
        partial = self._partial
        if partial is not None and lines:
            partial += lines[0]
            lines[0] = bytes(partial)
            partial = self._partial = None
        # Only a read longer than the limit (or one that completes a long partial
        # line) can hold a line that is too long: skip the per-line check otherwise.
        if len(data) > self.max_frame_bytes or (lines and len(lines[0]) > self.max_frame_bytes):
            for index, line in enumerate(lines):
                if len(line) > self.max_frame_bytes and self._too_long(line):
                    self.overflowed = True
                    self._partial = None
                    return [x for x in lines[:index] if x.strip(_BLANKS)]
        if tail:
            if partial is None:
                partial = self._partial = bytearray(tail)
            else:
                partial += tail
            # Fail as soon as the partial line cannot fit, instead of buffering to the newline.
            if len(partial) > self.max_frame_bytes + 1:
                self.overflowed = True
                self._partial = None
        for line in lines:
            if not line.strip(_BLANKS):  # rare: drop blank lines
                return [x for x in lines if x.strip(_BLANKS)]
        return lines

    def feed_eof(self) -> bytes | None:
        """End of stream: a final line without ``\\n`` is still a frame."""
        if self.overflowed or not self._partial:
            return None
        line = bytes(self._partial)
        self._partial = None
        if self._too_long(line):
            self.overflowed = True
            return None
        return line if line.strip(_BLANKS) else None
