"""The top-level parser and :func:`main`: logging, signals and the one-line error contract.

Errors: a user error (:class:`~autorec.errors.AutorecError`: bad data, option or id) is one
``error: ...`` line and exit code 2; a usage error from argparse is one line and exit 2; an
operating-system error (disk full, permission) is one line and exit 2. Anything else is a bug:
one ``autorec: error: ...`` line naming a log file that holds the traceback, exit code 1
(``--verbose`` prints the traceback instead). Ctrl-C and SIGTERM stop a run with one line, exit
codes 130 and 143; when training was interrupted, the line names the checkpoint it kept and
how to resume.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import logging
import os
import signal
import sys
import tempfile
import threading
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from autorec import __version__
from autorec.cli import data, evaluate, predict, recommend, reproduce, serve, train, tune
from autorec.cli.options import CliParser, global_switches
from autorec.cli.progress import ProgressReporter, ReporterLogHandler
from autorec.errors import AutorecError, TrainingInterrupted

log = logging.getLogger("autorec")

DESCRIPTION = """\
AutoRec (Sedhain et al., WWW 2015) and its baselines: train, evaluate with the paper's protocol,
reproduce the paper's tables, and predict or recommend with a saved model."""

EPILOG = """\
examples:
  autorec data download ml-1m
  autorec train --dataset ml-1m --model i-autorec            # one split: test RMSE, saved model
  autorec evaluate --dataset ml-1m --model i-autorec --runs 5 --json ml1m.json
  autorec recommend --model-dir runs/ml-1m-i-autorec-0 --user 1 -k 10
  autorec reproduce --quick
  autorec COMMAND --help                                      # options and examples of a command

Results go to stdout, progress and errors to stderr. Exit codes: 0 success, 2 bad input or
options (one 'error:' line), 1 internal error (the traceback is saved under
$AUTOREC_LOG_DIR, else ~/.cache/autorec/logs, and the line names the file; -v prints it
instead), 130 interrupted (Ctrl-C), 143 terminated (SIGTERM). An interrupted 'train' keeps
its checkpoints: the same command with --resume continues it.
Distributed training: torchrun --nproc_per_node=N -m autorec train ..."""


def build_parser() -> CliParser:
    parser = CliParser(prog="autorec", description=DESCRIPTION, epilog=EPILOG)
    parser.add_argument("--version", action="version", version=f"autorec {__version__}")
    for action in global_switches()._actions:
        if action.option_strings:
            parser._add_action(action)
    sub = parser.add_subparsers(
        dest="command", required=True, parser_class=CliParser, title="commands", metavar="COMMAND"
    )
    for command in (train, evaluate, tune, reproduce, predict, recommend, serve, data):
        command.register(sub)
    return parser


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the program is, so it unwinds exactly like Ctrl-C."""


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be set from the main thread
        return

    def handler(signum: int, frame: Any) -> None:
        raise Terminated

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def log_dir() -> Path:
    """Where tracebacks of internal errors go: $AUTOREC_LOG_DIR, else
    $XDG_CACHE_HOME/autorec/logs (~/.cache/autorec/logs); the temporary folder if neither can be
    created."""
    if os.environ.get("AUTOREC_LOG_DIR"):
        return Path(os.environ["AUTOREC_LOG_DIR"]).expanduser()
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "autorec" / "logs"


def _save_traceback(argv: list[str]) -> Path | None:
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    text = (
        f"autorec {__version__}, python {sys.version.split()[0]}\n"
        f"command: autorec {' '.join(argv)}\n\n{traceback.format_exc()}"
    )
    for folder in (log_dir(), Path(tempfile.gettempdir())):
        path = folder / f"autorec-{stamp}-{os.getpid()}.log"
        try:
            folder.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        except OSError:
            continue
        return path
    return None


def _one_line(text: str) -> str:
    return "; ".join(line.strip() for line in text.strip().splitlines() if line.strip())


def _internal_error(exc: BaseException, argv: list[str], verbose: bool, code: int) -> int:
    message = _one_line(str(exc)) or "(no message)"
    if isinstance(exc, OSError) and exc.strerror:
        message = exc.strerror + (f": {exc.filename}" if exc.filename else "")
    else:
        message = f"{type(exc).__name__}: {message}"
    if verbose:
        traceback.print_exc(file=sys.stderr)
        print(f"autorec: error: {message}", file=sys.stderr)
        return code
    where = _save_traceback(argv)
    detail = f"traceback in {where}" if where else "run again with -v for the traceback"
    print(f"autorec: error: {message} ({detail})", file=sys.stderr)
    return code


def _setup_logging(args: argparse.Namespace) -> ReporterLogHandler:
    """Log records and progress on stderr. Commands find the reporter in ``args.progress``:
    None with --quiet and on every rank but 0 of a distributed run (only rank 0 prints)."""
    from autorec.distributed import DistEnv

    level = logging.DEBUG if args.verbose else logging.INFO
    main_rank = DistEnv.from_environ().is_main
    if args.quiet or not main_rank:
        level = logging.WARNING
    reporter = ProgressReporter(sys.stderr)
    args.progress = reporter if main_rank and not args.quiet else None
    handler = ReporterLogHandler(reporter, epoch_lines=args.verbose)
    handler.setFormatter(logging.Formatter("%(message)s"))
    log.handlers[:] = [handler]
    log.setLevel(level)
    log.propagate = False
    return handler


def _interrupted(signal_name: str, exc: BaseException, checkpoints: Path | None) -> int:
    """The one line of an interruption, and its exit code (SIGTERM 143, SIGINT 130).
    ``checkpoints``: the command's checkpoint folder, named with how to resume when it exists."""
    verb = "terminated" if signal_name == "SIGTERM" else "interrupted"
    line = f"autorec: {verb} ({signal_name})"
    if isinstance(exc, TrainingInterrupted):
        line += f" after epoch {exc.epoch}" if exc.epoch is not None else " during an epoch"
    if checkpoints is not None and checkpoints.is_dir():
        kept = getattr(exc, "checkpoint", None) or checkpoints
        line += f"; checkpoint kept at {kept}; run the same command with --resume to continue"
    elif isinstance(exc, TrainingInterrupted) and exc.checkpoint is not None:
        line += f"; checkpoint kept at {exc.checkpoint}"
    from autorec.distributed import DistEnv

    if DistEnv.from_environ().is_main:  # under torchrun every rank stops; one line is enough
        print(line, file=sys.stderr)
    return 143 if signal_name == "SIGTERM" else 130


def _run(args: argparse.Namespace) -> int:
    if getattr(args, "threads", None):
        import torch

        torch.set_num_threads(args.threads)
    if not getattr(args, "distributed", False):
        return int(args.func(args) or 0)
    from autorec.distributed import setup, teardown

    setup(getattr(args, "opt_device", None))
    try:
        return int(args.func(args) or 0)
    finally:
        teardown()


def main(argv: list[str] | None = None) -> int:
    """Run one command; returns the exit code (never raises, never prints a traceback)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    verbose = "-v" in argv or "--verbose" in argv
    handler: ReporterLogHandler | None = None
    args: argparse.Namespace | None = None
    with _sigterm_as_interrupt():
        try:
            parser = build_parser()
            if not argv:
                parser.print_help(sys.stderr)
                return 2
            try:
                args = parser.parse_args(argv)
            except SystemExit as exc:  # --help, --version, or a usage error already printed
                return exc.code if isinstance(exc.code, int) else 2
            args.quiet = getattr(args, "quiet", False)
            args.verbose = getattr(args, "verbose", False)
            handler = _setup_logging(args)
            return _run(args)
        except TrainingInterrupted as exc:
            return _interrupted(exc.signal_name, exc, getattr(args, "checkpoint_dir", None))
        except AutorecError as exc:
            print(f"error: {_one_line(str(exc))}", file=sys.stderr)
            return 2
        except Terminated as exc:
            return _interrupted("SIGTERM", exc, getattr(args, "checkpoint_dir", None))
        except KeyboardInterrupt as exc:
            return _interrupted("SIGINT", exc, getattr(args, "checkpoint_dir", None))
        except OSError as exc:
            return _internal_error(exc, argv, verbose, 2)
        except Exception as exc:
            return _internal_error(exc, argv, verbose, 1)
        finally:
            if handler is not None:
                handler.reporter.close()
