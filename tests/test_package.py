"""Import-time behaviour of the package, each case in a fresh interpreter."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

THP_SWITCH = Path("/sys/kernel/mm/transparent_hugepage/enabled")


def _run(code: str, thp: str | None = None) -> str:
    env = {k: v for k, v in os.environ.items() if k != "THP_MEM_ALLOC_ENABLE"}
    if thp is not None:
        env["THP_MEM_ALLOC_ENABLE"] = thp
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


SHOW = "import os; print(os.environ.get('THP_MEM_ALLOC_ENABLE'))"


def test_importing_autorec_before_torch_turns_huge_pages_on() -> None:
    assert _run(f"import autorec, torch; {SHOW}") == "1"


def test_an_explicit_choice_is_kept() -> None:
    assert _run(f"import autorec; {SHOW}", thp="0") == "0"


def test_nothing_changes_once_torch_is_loaded() -> None:
    # torch reads the variable at its first allocation: setting it later would only mislead.
    assert _run(f"import torch, autorec; {SHOW}") == "None"


@pytest.mark.skipif(
    not THP_SWITCH.exists() or "[never]" in THP_SWITCH.read_text(),
    reason="the kernel offers no transparent huge pages",
)
def test_large_tensors_get_huge_pages() -> None:
    # The end-to-end effect, through this torch version: a touched 64 MB tensor is backed by
    # huge pages (AnonHugePages grows) when autorec is imported first, and not with the opt-out.
    code = (
        "import autorec, torch\n"
        "def huge():\n"
        "    for line in open('/proc/self/smaps_rollup'):\n"
        "        if line.startswith('AnonHugePages:'):\n"
        "            return int(line.split()[1])\n"
        "before = huge()\n"
        "t = torch.ones(16 << 20)\n"
        "print(huge() - before)\n"
    )
    assert int(_run(code)) >= 2048  # kB: at least one 2 MB page
    if "[madvise]" in THP_SWITCH.read_text():
        assert int(_run(code, thp="0")) == 0
