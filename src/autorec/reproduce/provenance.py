"""Where and how the numbers were computed (versions, hardware, torch threads, huge pages), and
durations in words."""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

import numpy as np

import autorec


def torch_threads() -> int:
    import torch

    return torch.get_num_threads()


def huge_pages() -> str:
    """Whether torch backs large CPU tensors with transparent huge pages in this process (see
    ``autorec/__init__.py``): provenance for the cell's seconds, since it changes speed, not
    numbers (with one thread, weights are bit-identical either way)."""
    return "on" if os.environ.get("THP_MEM_ALLOC_ENABLE") == "1" else "off"


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo, else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment() -> dict[str, Any]:
    """Versions and hardware, for the report."""
    import torch

    cpu = cpu_model()
    try:
        memory_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError, AttributeError):
        memory_gb = None
    return {
        "autorec": autorec.__version__,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "huge_pages": huge_pages(),
        "memory_gib": None if memory_gb is None else round(memory_gb, 1),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def fmt_duration(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
