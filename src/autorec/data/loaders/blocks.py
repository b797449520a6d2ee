"""Reading rating files as blocks of whole lines, and knowing where each line came from.

Every format reads its files through :func:`read_blocks`: blocks of about :data:`CHUNK_BYTES`
bytes, each ending at a line end, small files concatenated into one block, with an
:class:`Origins` table that maps a line of a block back to (file, 1-based line number) for error
messages. A UTF-8 byte-order mark at the start of a file is dropped here (editors on Windows write
one), so that it cannot become part of the first id.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

#: Bytes read per block. Small blocks keep the temporaries (about 6x a block) in the allocator's
#: reuse lists instead of fresh pages, which is measurably faster than large ones.
CHUNK_BYTES = 4 << 20

#: The UTF-8 byte-order mark.
BOM = b"\xef\xbb\xbf"


class Origins:
    """Where the lines of one block come from: pieces of one or more files.

    ``starts[k]`` is the block line index (0-based) of piece k's first line, ``files[k]`` its file
    index, ``lines[k]`` the 1-based line number of that line in its file, ``at_start[k]`` whether
    the piece begins its file.
    """

    __slots__ = ("starts", "files", "lines", "at_start")

    def __init__(self) -> None:
        self.starts: list[int] = []
        self.files: list[int] = []
        self.lines: list[int] = []
        self.at_start: list[bool] = []

    def add(self, start: int, file_idx: int, line: int, at_start: bool) -> None:
        self.starts.append(start)
        self.files.append(file_idx)
        self.lines.append(line)
        self.at_start.append(at_start)

    def locate(self, block_line: int) -> tuple[int, int]:
        k = bisect.bisect_right(self.starts, block_line) - 1
        return self.files[k], self.lines[k] + block_line - self.starts[k]

    def file_start_lines(self) -> list[int]:
        """Block line indices that are the first line of a file."""
        return [s for s, a in zip(self.starts, self.at_start, strict=True) if a]


def _file_pieces(path: Path, chunk_bytes: int, skip_header: bool) -> Iterator[tuple[bytes, int]]:
    """(piece, 1-based line number of its first line): whole lines, each ending in ``\\n``.

    A leading byte-order mark and trailing whitespace at the end of the file (blank lines, a
    missing final newline) are dropped.
    """
    with open(path, "rb") as f:
        if f.read(len(BOM)) != BOM:
            f.seek(0)
        line = 1
        if skip_header:
            if f.readline():
                line = 2
        carry = b""
        block = f.read(chunk_bytes)
        while block:
            nxt = f.read(chunk_bytes)
            buf = carry + block if carry else block
            if not nxt:
                buf = buf.rstrip()
                if buf:
                    yield buf + b"\n", line
                return
            cut = buf.rfind(b"\n") + 1
            if cut:
                piece, carry = buf[:cut], buf[cut:]
                yield piece, line
                line += count_newlines(piece)
            else:
                carry = buf
            block = nxt


def read_blocks(paths: Sequence[Path], skip_header: bool) -> Iterator[tuple[bytes, Origins]]:
    """Blocks of about :data:`CHUNK_BYTES` bytes; small files are concatenated into one block.
    ``skip_header`` drops the first line of every file."""
    chunk_bytes = CHUNK_BYTES  # read at call time: tests shrink it to cross block boundaries
    parts: list[bytes] = []
    origins = Origins()
    size = 0
    n_lines = 0
    for file_idx, path in enumerate(paths):
        first = True
        for piece, line in _file_pieces(path, chunk_bytes, skip_header):
            origins.add(n_lines, file_idx, line, first)
            first = False
            parts.append(piece)
            size += len(piece)
            n_lines += count_newlines(piece)
            if size >= chunk_bytes:
                yield (parts[0] if len(parts) == 1 else b"".join(parts)), origins
                parts, origins, size, n_lines = [], Origins(), 0, 0
    if parts:
        yield (parts[0] if len(parts) == 1 else b"".join(parts)), origins


def count_newlines(buf: bytes) -> int:
    return int(np.count_nonzero(np.frombuffer(buf, dtype=np.uint8) == 10))


def peek_lines(path: Path, max_lines: int = 2) -> list[tuple[int, str]]:
    """The first ``max_lines`` non-blank lines of a file as (1-based line number, text), without
    a leading byte-order mark."""
    out: list[tuple[int, str]] = []
    with open(path, "rb") as f:
        for number, raw in enumerate(f, start=1):
            if number == 1:
                raw = raw.removeprefix(BOM)
            text = raw.decode("utf-8", "surrogateescape").strip()
            if text:
                out.append((number, text))
                if len(out) >= max_lines:
                    break
    return out
