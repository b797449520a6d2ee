"""What the benchmarks say about the machine they ran on (shared by bench_data and bench_train)."""

from __future__ import annotations

from autorec.reproduce.provenance import cpu_model

__all__ = ["cpu_model"]
