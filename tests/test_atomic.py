"""Atomic writes: the target is the old content or the new, never partial; no temporary is left."""

from __future__ import annotations

import json
import os
import threading

import pytest

from autorec.atomic import atomic_write_json, atomic_write_text, atomic_write_with
from autorec.evaluation import summary_ci95


def test_replaces_whole_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "sub" / "out.json"
    atomic_write_json(target, {"a": 1})
    atomic_write_json(target, {"a": 2})
    assert json.loads(target.read_text()) == {"a": 2}
    assert sorted(p.name for p in target.parent.iterdir()) == ["out.json"]


def test_failed_writer_keeps_old_content(tmp_path):
    target = tmp_path / "out.txt"
    atomic_write_text(target, "old")

    def broken(path):
        path.write_text("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        atomic_write_with(target, broken)
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_permissions_follow_umask_not_0600(tmp_path):
    target = tmp_path / "out.txt"
    old = os.umask(0o022)
    try:
        atomic_write_text(target, "x")
    finally:
        os.umask(old)
    assert target.stat().st_mode & 0o777 == 0o644


def test_concurrent_writers_never_collide_or_mix(tmp_path):
    # Two writers used to share one fixed ".tmp" name: one could rename the other's half file.
    target = tmp_path / "out.json"
    errors: list[BaseException] = []

    def writer(tag: str) -> None:
        try:
            for i in range(200):
                atomic_write_json(target, {"tag": tag, "i": i, "pad": tag * 5000})
        except BaseException as exc:  # pragma: no cover - the assertion reports it
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(t,)) for t in "ab"]
    for t in threads:
        t.start()
    seen = 0
    while any(t.is_alive() for t in threads):
        if target.exists():
            payload = json.loads(target.read_text())
            assert payload["pad"] == payload["tag"] * 5000
            seen += 1
    for t in threads:
        t.join()
    assert not errors
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]


def test_summary_ci95_is_json_friendly():
    assert summary_ci95([]) == (None, None)
    assert summary_ci95([0.8]) == (0.8, None)
    mean, ci = summary_ci95([1.0, 2.0, 3.0])
    # t(0.975, 2 dof) = 4.302653 (scipy.stats.t.ppf); sd = 1, n = 3
    assert mean == pytest.approx(2.0)
    assert ci == pytest.approx(4.302653 / 3**0.5, rel=1e-5)
