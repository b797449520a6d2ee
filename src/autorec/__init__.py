"""autorec: AutoRec (Sedhain, Menon, Sanner, Xie, WWW 2015) and its baselines on PyTorch."""

from __future__ import annotations

__version__ = "0.1.0"
