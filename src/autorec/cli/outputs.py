"""What commands write: checks of every output path before any work, the JSON summary, and the
atomic write of it.

The checks run before data is loaded, so a run of minutes on ML-1M cannot end with "is a
directory". They cannot rule out every later failure (a full disk), only the ones a user can see
coming: an output that is a file where a folder is needed or the reverse, a parent that is a file
or not writable, and an existing model folder that ``--overwrite`` does not allow to replace.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from autorec import __version__
from autorec.atomic import atomic_write_json
from autorec.errors import ConfigError


def _check_parent(path: Path, option: str) -> None:
    """The nearest existing ancestor of ``path`` is a writable folder (the rest is created)."""
    parent = path.absolute().parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise ConfigError(f"{option} {path}: {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ConfigError(f"{option} {path}: cannot write in {parent} (permission denied)")


def check_output_file(path: str | None, option: str) -> None:
    """``path`` (given as ``option``) can be written as a file; None (not given) passes."""
    if path is None:
        return
    target = Path(path)
    if target.is_dir():
        raise ConfigError(f"{option} {target}: is a folder; give a file name")
    if target.exists() and not os.access(target, os.W_OK):
        raise ConfigError(f"{option} {target}: cannot overwrite it (permission denied)")
    _check_parent(target, option)


def check_output_dir(path: str | Path, option: str) -> None:
    """``path`` is an existing folder or can be created as one."""
    target = Path(path)
    if target.exists() and not target.is_dir():
        raise ConfigError(f"{option} {target}: is a file, not a folder")
    if target.is_dir() and not os.access(target, os.W_OK | os.X_OK):
        raise ConfigError(f"{option} {target}: cannot write in it (permission denied)")
    _check_parent(target, option)


def check_model_dir(path: Path, option: str, overwrite: bool) -> bool:
    """``path`` can receive a saved model; True when it holds one that will be replaced.

    An existing model needs ``--overwrite``; a non-empty folder holding no model is refused
    even then, since saving would mix a model into someone else's files.
    """
    check_output_dir(path, option)
    if not path.is_dir() or not any(path.iterdir()):
        return False
    from autorec.models.persistence import holds_model

    if not holds_model(path):
        raise ConfigError(
            f"{option} {path}: the folder is not empty and holds no saved model; "
            "choose a new or empty folder"
        )
    if not overwrite:
        raise ConfigError(
            f"{option} {path}: a saved model is already there; pass --overwrite to replace it "
            "or choose another folder"
        )
    return True


def write_json(path: str | None, payload: dict[str, Any]) -> None:
    if path is not None:
        atomic_write_json(path, payload)


def summary_json(
    dataset: str,
    model_name: str,
    config: dict[str, Any],
    runs: list[dict[str, Any]],
    split: Any,
) -> dict[str, Any]:
    """The JSON ``train`` and ``evaluate`` write (fields in ``autorec evaluate --help``);
    ``split``: the :class:`~autorec.cli.options.SplitChoice` the runs used."""
    from autorec.evaluation import summary_ci95

    rmse_mean, rmse_ci = summary_ci95([r["test_rmse"] for r in runs if r["test_rmse"] is not None])
    mae_mean, mae_ci = summary_ci95([r["test_mae"] for r in runs if r["test_mae"] is not None])
    tested = [r for r in runs if r["n_test_fallback"] is not None]
    return {
        "dataset": dataset,
        "model": model_name,
        "config": config,
        "split": split.to_dict(),
        "fallback": config["fallback"],
        "n_test_fallback": None if not tested else sum(r["n_test_fallback"] for r in tested),
        "runs": runs,
        "test_rmse_mean": rmse_mean,
        "test_rmse_ci95": rmse_ci,
        "test_mae_mean": mae_mean,
        "test_mae_ci95": mae_ci,
        "autorec_version": __version__,
    }


# The field list ``evaluate --help`` and ``train --help`` print (README: "the JSON described in
# autorec evaluate --help").
JSON_HELP = """\
JSON written by --json:
  dataset, model, autorec_version
  config            the full model configuration (defaults included)
  split             {"kind": "paper"} (random 90/10 splits, one per seed), {"kind": "official",
                    "folds": [...]} or {"kind": "files", "train": FILE, "test": FILE}
  fallback          the rule for cold test pairs (user or item without a training rating),
                    the same for every model: "bias" (bias baseline) or "constant" (mid-scale)
  n_test_fallback   cold test pairs over all runs (each answered by the fallback)
  test_rmse_mean    mean test RMSE over the runs
  test_rmse_ci95    half-width of its 95% confidence interval (null for one run)
  test_mae_mean, test_mae_ci95    the same for MAE
  runs              one object per seed (per fold with --split / --train):
    seed, fold (official fold, or "files"; fixed splits only)
    test_rmse, test_mae, val_rmse (validation RMSE of the chosen setting)
    n_train, n_val, n_test, n_test_fallback (test ratings answered by the fallback)
    hyperparameters   the chosen grid point (and n_epochs of the retrain)
    candidates        every grid point tried, with its val_rmse and best_epoch
    epochs, best_epoch, train_seconds, epoch_seconds (per epoch)
    learning_curve    train_rmse and val_rmse per epoch of the run that chose the setting
"""


def is_main_process() -> bool:
    from autorec.distributed import DistEnv

    return DistEnv.from_environ().is_main
