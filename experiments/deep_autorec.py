"""Deep AutoRec (500-250-500) and U-AutoRec k = 500 against the paper (issue 18): one attempt
per process, on one split, chosen on validation, the test set scored once for the report.

    # an AutoRec config as given (any AutoRecConfig field by --set, a JSON value)
    python experiments/deep_autorec.py fit --threads 1 --set 'hidden=[500,250,500]' \
        --set lam=100 --set 'optimizer="lbfgs"' --set n_epochs=300 --out deep-lbfgs.json
    # greedy layer-wise pre-training, then the stack fine-tuned (see below)
    python experiments/deep_autorec.py pretrain --threads 1 --set lam=100 --out deep-pre.json

Data: ML-1M (``--dataset``), the paper's random 90/10 split with seed ``--seed`` (default 0)
and its validation (10% of train, same seed): :func:`autorec.data.paper_split`. Each attempt
fits on train, early-stops on validation (``patience``), keeps the validation-best weights and
scores the test set once with them (no retrain on train + validation: the figures compare
attempts, not the protocol). Data: ``--data-dir``, else ``$AUTOREC_DATA_DIR``, else
``../shared/data``.

``pretrain`` (Hinton and Salakhutdinov, Science 2006; Bengio et al., NIPS 2006: greedy
layer-wise training of a deep autoencoder), for hidden = (k1, k2, k1):

1. a one-layer I-AutoRec with k1 units (lambda ``--pre-lam``), early-stopped on validation;
2. a dense autoencoder on its codes H = g(V r + mu) of every item (rows of H, k1 wide):
   ``min sum ||H - g(W3 g(W2 H + b2) + b3)||^2 + lam2/2 (||W2||^2 + ||W3||^2)``, full-batch
   RProp for ``--pre-epochs`` epochs (``--pre-lam2``);
3. the deep net V, W2, W3, W started from (V, mu) and (W, b) of step 1 and (W2, b2), (W3, b3)
   of step 2 (through :meth:`AutoRec.start_from`), then fine-tuned on the ratings with the
   config given by ``--set`` (lambda, optimiser, epochs), early-stopped on validation.

Writes one JSON (``--out``) with the config, validation RMSE, best epoch, test RMSE, the
validation curve and the seconds of every stage.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import torch

from autorec.atomic import atomic_write_json
from autorec.data import load_dataset, paper_split
from autorec.data.ratings import Ratings
from autorec.data.split import Split
from autorec.evaluation import evaluate
from autorec.models.autorec import ACTIVATIONS, AutoRec, AutoRecConfig
from autorec.optim import LeanRprop

log = logging.getLogger("deep_autorec")


def _fit(cfg: AutoRecConfig, train: Ratings, val: Ratings, start: AutoRec | None = None) -> AutoRec:
    model = AutoRec(cfg)
    if start is not None:
        model.start_from(start)
    return model.fit(train, val)


def _report(model: AutoRec, test: Ratings, seconds: float) -> dict[str, Any]:
    h = model.history
    best = h.best_epoch
    return {
        "val_rmse": h.val_rmse[best - 1] if h.val_rmse else None,
        "best_epoch": best,
        "epochs_run": h.n_epochs,
        "test_rmse": evaluate(model, test)["rmse"],
        "seconds": seconds,
        "val_curve": h.val_rmse,
    }


@torch.no_grad()
def item_codes(model: AutoRec, train: Ratings) -> torch.Tensor:
    """g(V r + mu) of every training row of a one-layer I-AutoRec: (n_items, k).

    The training matrix is densified (ML-1M: 3706 x 6040 floats, 90 MB), unobserved entries 0
    as in the sparse product of training."""
    net = model.net
    x = torch.zeros(model.n_items, model.n_users)  # (n_items, n_users)
    x[torch.from_numpy(train.item_idx), torch.from_numpy(train.user_idx)] = torch.from_numpy(
        train.rating
    ).float()
    return net.g(x @ net.encoder + net.encoder_bias)  # (n_items, k)


def pretrain_middle(
    codes: torch.Tensor, k2: int, g: str, lam2: float, n_epochs: int, seed: int
) -> tuple[torch.Tensor, ...]:
    """Step 2 of ``pretrain``: (W2 (k2, k1), b2 (k2,), W3 (k1, k2), b3 (k1,)) of a dense
    autoencoder ``codes -> g(W2 . + b2) -> g(W3 . + b3)`` fitted by full-batch RProp to the
    sum of squared errors plus ``lam2/2`` times the squared weights."""
    act = ACTIVATIONS[g]
    gen = torch.Generator().manual_seed(seed)
    k1 = codes.shape[1]

    def uniform(shape: tuple[int, ...], fan_in: int) -> torch.nn.Parameter:
        bound = fan_in**-0.5  # nn.Linear's default, as AutoRecNet draws its layers
        return torch.nn.Parameter((torch.rand(shape, generator=gen) * 2 - 1) * bound)

    w2, b2 = uniform((k2, k1), k1), uniform((k2,), k1)
    w3, b3 = uniform((k1, k2), k2), uniform((k1,), k2)
    opt = LeanRprop([w2, b2, w3, b3], lr=0.002)
    for epoch in range(1, n_epochs + 1):
        opt.zero_grad()
        recon = act(act(codes @ w2.t() + b2) @ w3.t() + b3)  # (n_items, k1)
        sse = (recon - codes).pow(2).sum()
        loss = sse + 0.5 * lam2 * (w2.pow(2).sum() + w3.pow(2).sum())
        loss.backward()
        opt.step()
        if epoch % 50 == 0 or epoch == n_epochs:
            log.info(
                "pretrain layer 2: epoch %d, code RMSE %.5f",
                epoch,
                float(sse.detach() / codes.numel()) ** 0.5,
            )
    return w2.detach(), b2.detach(), w3.detach(), b3.detach()


def stacked_start(
    cfg: AutoRecConfig,
    split: Split,
    args: argparse.Namespace,
    record: dict[str, Any],
    stage1_epochs: int | None = None,
) -> AutoRec:
    """Steps 1 and 2 of ``pretrain``: a fitted deep AutoRec holding the stacked weights, kept in
    ``--cache`` (the steps are deterministic given the seed and the pre-training settings).
    Step 1 early-stops on ``split.val``, or runs ``stage1_epochs`` epochs without validation
    (the retrain on train + validation)."""
    k1, k2, k3 = cfg.hidden
    if cfg.variant != "item" or k1 != k3:
        raise SystemExit("pretrain needs an item-based hidden=(k1, k2, k1)")
    key = f"stack-{k1}-{k2}-lam{args.pre_lam:g}-lam2{args.pre_lam2:g}-ep{args.pre_epochs}"
    key += f"-{cfg.g}-seed{args.seed}" + (f"-retrain{stage1_epochs}" if stage1_epochs else "")
    cached = Path(args.cache) / key if args.cache else None
    if cached is not None and (cached / "stages.json").is_file():
        record.update(json.loads((cached / "stages.json").read_text()))
        log.info("stacked weights from %s", cached)
        return AutoRec.load(cached / "model")  # type: ignore[return-value]
    t0 = time.perf_counter()
    one_cfg = cfg.replace(
        hidden=(k1,),
        lam=args.pre_lam,
        optimizer="rprop",
        lr=None,
        input_dropout=0.0,
        layer_lam_scales=(),
    )
    one = _fit(one_cfg.replace(n_epochs=stage1_epochs or 500), split.train, split.val)
    stages: dict[str, Any] = {"stage1": _report(one, split.test, time.perf_counter() - t0)}
    log.info("stage 1: %s", {k: v for k, v in stages["stage1"].items() if k != "val_curve"})
    t1 = time.perf_counter()
    w2, b2, w3, b3 = pretrain_middle(
        item_codes(one, split.train), k2, cfg.g, args.pre_lam2, args.pre_epochs, args.seed
    )
    stages["stage2"] = {
        "seconds": time.perf_counter() - t1,
        "lam2": args.pre_lam2,
        "epochs": args.pre_epochs,
    }
    # A fitted deep net to carry the stacked weights into start_from (one cheap epoch).
    start = _fit(cfg.replace(n_epochs=1), split.train, None)
    with torch.no_grad():
        net, src = start.net, one.net
        net.encoder.copy_(src.encoder)
        net.encoder_bias.copy_(src.encoder_bias)
        net.decoder.copy_(src.decoder)
        net.decoder_bias.copy_(src.decoder_bias)
        for dst, value in zip(
            (*net.middle_weights, *net.middle_biases), (w2, w3, b2, b3), strict=True
        ):
            dst.copy_(value)
    record.update(stages)
    if cached is not None:
        start.save(cached / "model", overwrite=True)
        atomic_write_json(cached / "stages.json", stages)
    return start


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("attempt", choices=("fit", "pretrain"))
    p.add_argument("--dataset", default="ml-1m")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="an AutoRecConfig field (JSON value); pretrain: of the fine-tuned deep net",
    )
    p.add_argument("--pre-lam", type=float, default=300.0, help="pretrain: lambda of step 1")
    p.add_argument("--pre-lam2", type=float, default=1.0, help="pretrain: lambda of step 2")
    p.add_argument("--pre-epochs", type=int, default=300, help="pretrain: epochs of step 2")
    p.add_argument("--cache", default=None, help="pretrain: folder keeping the stacked weights")
    p.add_argument(
        "--retrain",
        action="store_true",
        help="also retrain on train + validation for the epochs validation chose (every stage)",
    )
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--data-dir", default=None)
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)
    data_dir = args.data_dir or os.environ.get("AUTOREC_DATA_DIR") or "../shared/data"
    overrides = {k: json.loads(v) for k, _, v in (s.partition("=") for s in args.set)}
    overrides.setdefault("ranking_head", False)  # rating RMSE only: the head changes none of it
    if args.attempt == "pretrain":
        overrides.setdefault("hidden", [500, 250, 500])
    cfg = AutoRecConfig(seed=args.seed, **overrides)
    split = paper_split(load_dataset(args.dataset, data_dir=data_dir).ratings, seed=args.seed)
    assert split.val is not None
    record: dict[str, Any] = {
        "attempt": args.attempt,
        "dataset": args.dataset,
        "seed": args.seed,
        "config": cfg.to_dict(),
        "machine": f"{platform.node()}, {torch.get_num_threads()} torch threads, shared",
    }
    started = time.perf_counter()
    start = None
    if args.attempt == "pretrain":
        start = stacked_start(cfg, split, args, record)
        start_val = evaluate(start, split.val)["rmse"]
        record["stacked_val_rmse"] = start_val
        log.info("stacked, before fine-tuning: validation RMSE %.4f", start_val)
    t_fit = time.perf_counter()
    model = _fit(cfg, split.train, split.val, start)
    record["final"] = _report(model, split.test, time.perf_counter() - t_fit)
    log.info("final: %s", {k: v for k, v in record["final"].items() if k != "val_curve"})
    if args.retrain:
        # The protocol's retrain (Sedhain et al. 2015, Sec. 3): every stage again on train +
        # validation, each for the number of epochs validation chose for it.
        t_re = time.perf_counter()
        merged = Split(train=split.train.merge(split.val), val=None, test=split.test)
        epochs = model.history.best_epoch
        start = None
        if args.attempt == "pretrain":
            stages: dict[str, Any] = {}
            start = stacked_start(cfg, merged, args, stages, record["stage1"]["best_epoch"])
        again = _fit(cfg.replace(n_epochs=epochs), merged.train, None, start)
        record["retrain"] = _report(again, split.test, time.perf_counter() - t_re)
        print(f"retrained for {epochs} epochs: test RMSE {record['retrain']['test_rmse']:.4f}")
    record["seconds"] = time.perf_counter() - started
    final = record["final"]
    print(
        f"{args.attempt}: validation RMSE {final['val_rmse']:.4f} at epoch {final['best_epoch']} "
        f"of {final['epochs_run']}, test RMSE {final['test_rmse']:.4f}, {record['seconds']:.0f} s",
        flush=True,
    )
    atomic_write_json(Path(args.out), record)
    return 0


if __name__ == "__main__":
    sys.exit(main())
