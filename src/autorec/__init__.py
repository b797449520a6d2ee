"""autorec: AutoRec (Sedhain, Menon, Sanner, Xie, WWW 2015) and its baselines on PyTorch."""

from __future__ import annotations

import os as _os
import sys as _sys

__version__ = "0.1.0"

# Back PyTorch's CPU tensors of 2 MB and more with transparent huge pages (torch reads this
# variable once, at its first allocation, so only when autorec is imported before torch: always
# for the `autorec` command). The sparse engine gathers random 2 KB weight rows from matrices of
# up to 0.96 GB (Netflix) and allocates weight-sized gradients every epoch; with 4 KB pages both
# pay for TLB misses and page faults (first touch of a fresh 0.96 GB buffer: 0.5 s against
# 0.08 s here). Results do not change (bit-identical weights with one thread). Set
# THP_MEM_ALLOC_ENABLE=0 to opt out.
if "torch" not in _sys.modules:
    _os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")
