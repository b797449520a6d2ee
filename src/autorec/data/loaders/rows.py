"""Parsed rows accumulated block by block, and the map from a row back to its file and line.

Memory is proportional to the number of ratings (int32 indices while ids fit, float32 ratings,
optional int64 timestamps); the row -> (file, line) map is stored as runs of consecutive lines.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from autorec.data.loaders.blocks import Origins
from autorec.errors import DataError


class _Column:
    """One column filled block by block.

    Numbers go into one buffer sized from the first block (file size / bytes per row) and grown
    by a quarter when short, so the parsed blocks are never held twice for a final concatenate.
    Integer ids stay int32 while they fit. Strings (custom files) are concatenated at the end.
    """

    __slots__ = ("buf", "n", "parts")

    def __init__(self) -> None:
        self.buf: np.ndarray | None = None
        self.n = 0
        self.parts: list[np.ndarray] = []

    def append(self, values: np.ndarray, capacity: int) -> None:
        if values.dtype.kind in "US":
            self.parts.append(values)
            return
        if self.buf is None:
            self.buf = np.empty(max(capacity, len(values)), dtype=values.dtype)
        elif np.result_type(self.buf.dtype, values.dtype) != self.buf.dtype:
            self.buf = self.buf.astype(np.result_type(self.buf.dtype, values.dtype))
        end = self.n + len(values)
        if end > len(self.buf):
            grown = np.empty(max(end, len(self.buf) + len(self.buf) // 4), dtype=self.buf.dtype)
            grown[: self.n] = self.buf[: self.n]
            self.buf = grown
        self.buf[self.n : end] = values
        self.n = end

    def result(self) -> np.ndarray | None:
        if self.parts:
            return self.parts[0] if len(self.parts) == 1 else np.concatenate(self.parts)
        if self.buf is None:
            return None
        out = self.buf
        self.buf = None
        if len(out) != self.n:
            try:
                out.resize(self.n, refcheck=False)  # in place: no copy of the kept part
            except ValueError:  # pragma: no cover - not the owner of its data
                out = out[: self.n].copy()
        return out


class Rows:
    """Parsed columns of many blocks, plus a compressed table mapping a row to (file, line)."""

    def __init__(self, files: Sequence[Path]) -> None:
        self.files = [str(p) for p in files]
        self.total_bytes = sum(p.stat().st_size for p in files)
        self.cols: dict[str, _Column] = {
            name: _Column() for name in ("user", "item", "rating", "timestamp")
        }
        self.seg_row: list[np.ndarray] = []
        self.seg_file: list[np.ndarray] = []
        self.seg_line: list[np.ndarray] = []
        self.n = 0
        self.has_timestamp: bool | None = None

    def add(
        self,
        user: np.ndarray,
        item: np.ndarray,
        rating: np.ndarray,
        timestamp: np.ndarray | None,
        block_lines: np.ndarray,
        origins: Origins,
        where: tuple[int, int],
        block_bytes: int,
    ) -> None:
        if len(rating) == 0:
            return
        has_ts = timestamp is not None
        if self.has_timestamp is None:
            self.has_timestamp = has_ts
        elif self.has_timestamp != has_ts:
            file_idx, line = where
            raise DataError(
                f"{self.files[file_idx]}, line {line}: "
                f"{'has a timestamp' if has_ts else 'has no timestamp'} but earlier lines "
                f"{'do not' if has_ts else 'do'}; every line needs the same fields"
            )
        capacity = int(self.total_bytes / max(block_bytes, 1) * len(rating) * 1.02) + 1024
        self.cols["user"].append(_compact_ids(user), capacity)
        self.cols["item"].append(_compact_ids(item), capacity)
        self.cols["rating"].append(np.asarray(rating, dtype=np.float32), capacity)
        if timestamp is not None:
            self.cols["timestamp"].append(np.asarray(timestamp, dtype=np.int64), capacity)
        # rows -> (file, line), compressed into runs of consecutive lines of one file
        block_lines = np.asarray(block_lines, dtype=np.int64)
        if len(origins.starts) == 1:
            file_idx = np.full(len(block_lines), origins.files[0], dtype=np.int64)
            line = block_lines + origins.lines[0]
        else:
            starts = np.asarray(origins.starts, dtype=np.int64)
            piece = np.searchsorted(starts, block_lines, side="right") - 1
            file_idx = np.asarray(origins.files, dtype=np.int64)[piece]
            line = np.asarray(origins.lines, dtype=np.int64)[piece] + block_lines - starts[piece]
        brk = np.ones(len(line), dtype=bool)
        brk[1:] = (np.diff(line) != 1) | (np.diff(file_idx) != 0)
        at = np.flatnonzero(brk)
        self.seg_row.append(self.n + at)
        self.seg_file.append(file_idx[at])
        self.seg_line.append(line[at])
        self.n += len(rating)

    def column(self, name: str) -> np.ndarray | None:
        return self.cols[name].result()

    def locator(self) -> Locator:
        def cat(parts: list[np.ndarray]) -> np.ndarray:
            return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)

        return Locator(tuple(self.files), cat(self.seg_row), cat(self.seg_file), cat(self.seg_line))


@dataclass(frozen=True)
class Locator:
    files: tuple[str, ...]
    seg_row: np.ndarray
    seg_file: np.ndarray
    seg_line: np.ndarray

    def __call__(self, row: int) -> tuple[str, int]:
        k = int(np.searchsorted(self.seg_row, row, side="right")) - 1
        return self.files[int(self.seg_file[k])], int(self.seg_line[k] + row - self.seg_row[k])


def _compact_ids(ids: np.ndarray) -> np.ndarray:
    """int32 when the integer ids fit (halves memory on huge sets); strings unchanged."""
    if ids.dtype.kind == "i" and len(ids):
        lo, hi = ids.min(), ids.max()
        if lo >= np.iinfo(np.int32).min and hi <= np.iinfo(np.int32).max:
            return ids.astype(np.int32)
    return ids
