"""The cell store: finished cells as JSON under ``DIR/cells/<setting>/seed<N>.json`` (written
atomically), the folder's manifest, and the lock files by which several processes share a folder."""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import platform
import time
from pathlib import Path
from typing import Any

from autorec.atomic import atomic_write_json
from autorec.errors import ConfigError
from autorec.reproduce.cells import Cell, Plan, stale_reason

log = logging.getLogger(__name__)

# A holder creates its lock and writes its name into it microseconds later, so a lock that is
# still empty or unreadable this long after its last change was left by a process that died
# in between (or damaged from outside): it is taken over instead of blocking its cell forever.
LOCK_GRACE_SECONDS = 60.0

_UNKNOWN_HOLDER = {"host": "?", "pid": "?", "since": "?"}


class CellStore:
    """Finished cells as JSON files under ``DIR/cells``, one per (setting, seed)."""

    def __init__(self, out_dir: Path, plan: Plan) -> None:
        self.out_dir = out_dir
        self.root = out_dir / "cells"
        self.quick = plan.quick
        self._warned: set[Path] = set()
        self._check_manifest(plan)

    def _check_manifest(self, plan: Plan) -> None:
        manifest = self.out_dir / "manifest.json"
        wanted = {"dataset": plan.dataset, "quick": plan.quick}
        if manifest.is_file():
            have = json.loads(manifest.read_text())
            have = {k: have.get(k) for k in wanted}
            if have != wanted:
                raise ConfigError(
                    f"{self.out_dir} holds results for dataset {have['dataset']!r} "
                    f"(quick={have['quick']}), not {plan.dataset!r} (quick={plan.quick}); "
                    "choose another --out"
                )
            return
        atomic_write_json(manifest, wanted, indent=1)

    def path(self, cell: Cell) -> Path:
        return self.root / cell.setting / f"seed{cell.seed}.json"

    def get(self, cell: Cell) -> dict[str, Any] | None:
        path = self.path(cell)
        if not path.is_file():
            return None
        try:
            payload = json.loads(path.read_text())
        except json.JSONDecodeError:
            # Writes are atomic, so this is damage from outside: run the cell again.
            log.warning("%s is not valid JSON; the cell will run again", path)
            return None
        reason = stale_reason(cell, payload, self.quick)
        if reason is not None:
            if path not in self._warned:  # the store is asked more than once per cell
                self._warned.add(path)
                log.warning("%s was run under an older protocol (%s); it runs again", path, reason)
            return None
        return payload

    def put(self, cell: Cell, payload: dict[str, Any]) -> None:
        atomic_write_json(self.path(cell), payload, indent=1)

    # Several processes (one per core, or per machine on a shared disk) may work on one folder:
    # each claims a cell with a lock file created exclusively before running it. (The lock is
    # the one file not written through autorec.atomic: its exclusive creation is the claim.)
    def lock_path(self, cell: Cell) -> Path:
        return self.root / cell.setting / f"seed{cell.seed}.lock"

    def claim(self, cell: Cell) -> dict[str, Any] | None:
        """Claim ``cell`` for this process. Returns None when claimed, else the holder's lock
        (host, pid, since; with ``problem`` when the lock could not be read). A lock left by a
        dead process of this host, or empty or unreadable for ``LOCK_GRACE_SECONDS``, is taken
        over."""
        path = self.lock_path(cell)
        path.parent.mkdir(parents=True, exist_ok=True)
        mine = {
            "host": platform.node(),
            "pid": os.getpid(),
            "since": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        }
        for _ in range(3):
            try:
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                try:
                    seen = path.stat()
                except FileNotFoundError:  # released between our two looks: try again
                    continue
                holder = _read_holder(path)
                if holder is None:
                    continue
                if "problem" in holder:
                    age = time.time() - seen.st_mtime
                    if age < LOCK_GRACE_SECONDS:
                        return holder  # most likely being written right now
                    log.warning("%s: %s for %.0f s; taking it over", path, holder["problem"], age)
                elif _alive_elsewhere(holder):
                    return holder
                else:
                    log.warning("%s: its process %s has ended; taking it over", path, holder["pid"])
                if not _remove_if_unchanged(path, seen):
                    return {**holder, "problem": f"{path} cannot be removed"}
                continue
            with os.fdopen(fd, "w") as fh:
                json.dump(mine, fh)
            return None
        return _read_holder(path) or dict(_UNKNOWN_HOLDER)

    def release(self, cell: Cell) -> None:
        self.lock_path(cell).unlink(missing_ok=True)


def _read_holder(path: Path) -> dict[str, Any] | None:
    """The holder a lock names; None when the lock is gone; with ``problem`` when it is empty,
    unreadable or names no host and pid."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        return {**_UNKNOWN_HOLDER, "problem": f"the lock cannot be read ({exc})"}
    try:
        holder = json.loads(text)
    except json.JSONDecodeError:
        holder = None
    if not isinstance(holder, dict) or not {"host", "pid"} <= set(holder):
        problem = "the lock is empty" if not text else "the lock names no holder"
        return {**_UNKNOWN_HOLDER, "problem": problem}
    return holder


def _remove_if_unchanged(path: Path, seen: os.stat_result) -> bool:
    """Remove the lock judged abandoned unless it was replaced meanwhile (then the next look
    judges the new one). False when it cannot be removed."""
    try:
        now = path.stat()
        if (now.st_ino, now.st_mtime_ns) == (seen.st_ino, seen.st_mtime_ns):
            path.unlink()
    except FileNotFoundError:
        pass
    except OSError:
        return False
    return True


def _alive_elsewhere(holder: dict[str, Any]) -> bool:
    """Whether a lock's holder may still be running: always for another host (we cannot see
    its processes), else whether its pid exists."""
    if holder.get("host") != platform.node() or not isinstance(holder.get("pid"), int):
        return True
    try:
        os.kill(holder["pid"], 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def holder_text(holder: dict[str, Any]) -> str:
    """Why a claimed cell was skipped, in words."""
    if "problem" in holder:
        grace = f"{LOCK_GRACE_SECONDS:.0f} s"
        return f"{holder['problem']} (an empty or unreadable lock is taken over after {grace})"
    return (
        f"being run by process {holder.get('pid')} on {holder.get('host')} "
        f"since {holder.get('since')}"
    )
