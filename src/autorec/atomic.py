"""Atomic file writes: a reader sees the old file or the new one, never a half-written mix.

Every file autorec writes for a user (JSON summaries, reports, figures, reproduce cells, model
files) goes through here. The new content is written to a temporary file with a unique name in
the target's folder (so two writers never share a temporary name), flushed to disk, and moved
over the target with one ``os.replace``, which POSIX makes atomic within one file system. On any
error the temporary file is removed and the target is left as it was.
"""

from __future__ import annotations

import contextlib
import json
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any


@contextlib.contextmanager
def atomic_path(target: str | Path, suffix: str = "") -> Iterator[Path]:
    """Yield a fresh temporary path beside ``target``; on success it replaces ``target``.

    ``suffix`` keeps an extension that a writer dispatches on (matplotlib picks the format of
    ``savefig`` from ``.png``). The caller writes the whole file to the yielded path; when the
    block ends without an exception the file is fsynced and renamed over ``target``.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    # O_EXCL with a random name: unique per writer, and created with the umask's permissions
    # (mkstemp would make it 0600, and the replaced file would keep that).
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:12]}.tmp{suffix}")
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    try:
        yield tmp
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_bytes(target: str | Path, data: bytes) -> None:
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(target: str | Path, text: str) -> None:
    atomic_write_bytes(target, text.encode("utf-8"))


def atomic_write_json(target: str | Path, payload: Any, indent: int = 2) -> None:
    atomic_write_text(target, json.dumps(payload, indent=indent))


def atomic_write_with(target: str | Path, write: Callable[[Path], None], suffix: str = "") -> None:
    """Atomically create ``target`` with a writer that takes a path (``savefig``, safetensors)."""
    with atomic_path(target, suffix=suffix) as tmp:
        write(tmp)
