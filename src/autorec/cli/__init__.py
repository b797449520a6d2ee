"""The ``autorec`` command line: the only package that prints to stdout.

One module per command, each with ``register(subparsers)`` and its handler ``run(args)``:
:mod:`~autorec.cli.train`, :mod:`~autorec.cli.evaluate`, :mod:`~autorec.cli.reproduce`,
:mod:`~autorec.cli.predict`, :mod:`~autorec.cli.recommend`, and :mod:`~autorec.cli.data` (the
group of :mod:`~autorec.cli.download` and :mod:`~autorec.cli.stats`). Options several commands
share (data set, model, ``-q``/``-v``) live in :mod:`~autorec.cli.options`; output checks and the
JSON summary in :mod:`~autorec.cli.outputs`; progress bars in :mod:`~autorec.cli.progress`;
the top-level parser, logging, signals and the error contract in :mod:`~autorec.cli.app`.

A new command is a module with ``register`` and ``run``, listed in ``app.build_parser``.
Distributed runs (see :mod:`autorec.distributed`) use ``torchrun --nproc_per_node=N -m autorec
train ...``.
"""

from __future__ import annotations

from autorec.cli.app import build_parser, main

__all__ = ["build_parser", "main"]
