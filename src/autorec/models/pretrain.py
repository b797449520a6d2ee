"""Greedy layer-wise pre-training of a deep AutoRec (``AutoRecConfig.pretrain="layerwise"``).

Hinton and Salakhutdinov (Science 2006) and Bengio et al. (NIPS 2006) train a deep autoencoder
one layer at a time and then fine-tune the stack. For AutoRec with hidden = (k_1, k_2, ..., k_1)
(an odd-length palindrome, e.g. the paper's 500-250-500):

1. a one-layer AutoRec with k_1 units on the ratings (lambda ``pretrain_lam``, RProp,
   early-stopped on validation, at most ``pretrain_epochs`` epochs; without validation it runs
   exactly ``pretrain_epochs``, the count the protocol's retrain takes from the validation fit);
   its (V, mu) and (W, b) become the deep net's outer layers;
2. on its codes H = g(V r + mu) of every training row (H: n_rows x k_1), a dense autoencoder

   .. math::  \\min \\sum \\|H - g(W_3 \\, g(W_2 H + b_2) + b_3)\\|^2
              + \\frac{\\lambda_2}{2} (\\|W_2\\|_F^2 + \\|W_3\\|_F^2)

   fitted by full-batch RProp for ``pretrain_middle_epochs`` epochs (lambda_2
   ``pretrain_middle_lam``); deeper palindromes repeat step 2 on the codes g(W_2 H + b_2).
   Step 2 fits codes, not ratings, so there is no validation RMSE to stop it: its budget is
   fixed, and the retrain runs the same one;
3. the deep net starts from the stacked weights and :meth:`AutoRec.fit` fine-tunes it with the
   model's own config (lambda, optimiser, epochs).

Defaults and measurements: docs/experiments.md, "Deep AutoRec and U-AutoRec k=500: what was
tried (issue 18)": on ML-1M the stack fine-tuned with lambda 100 gets 0.8278 +- 0.0028 over five
seeds (paper 0.827), where a random start needs 1331 RProp epochs to reach validation 0.8454.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

import torch

from autorec.data.ratings import Ratings
from autorec.errors import ConfigError, ModelFitError
from autorec.optim import LeanRprop

if TYPE_CHECKING:
    from autorec.models.autorec import AutoRec, AutoRecConfig

log = logging.getLogger(__name__)


def check_layerwise(cfg: AutoRecConfig) -> None:
    """Refuse a config that ``pretrain="layerwise"`` cannot stack (a clear ConfigError)."""
    hidden = cfg.hidden
    if len(hidden) == 1:
        raise ConfigError(
            f"pretrain='layerwise' needs more than one hidden layer, got hidden={list(hidden)}: "
            "a one-layer AutoRec is step 1 of the pre-training itself"
        )
    if len(hidden) % 2 == 0 or hidden != hidden[::-1]:
        raise ConfigError(
            f"pretrain='layerwise' needs a symmetric stack of odd depth (k1, k2, ..., k2, k1) so "
            f"that each stage is an autoencoder, got hidden={list(hidden)}"
        )
    if cfg.kernel_dim:
        raise ConfigError("pretrain='layerwise' is not implemented for kernelised layers")


def fit_middle(
    codes: torch.Tensor,
    k: int,
    g: str,
    lam: float,
    n_epochs: int,
    generator: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Step 2: (W_in (k, k_in), b_in (k,), W_out (k_in, k), b_out (k_in,)) of the dense
    autoencoder ``codes -> g(W_in . + b_in) -> g(W_out . + b_out)``, fitted by full-batch RProp
    (initial step 0.002, as AutoRec's) to the sum of squared errors plus ``lam/2`` times the
    squared weights, from nn.Linear's U(-1/sqrt(fan_in), 1/sqrt(fan_in)) start (AutoRecNet's)."""
    from autorec.models.autorec import ACTIVATIONS, DEFAULT_LR

    act = ACTIVATIONS[g]
    k_in = codes.shape[1]

    def uniform(shape: tuple[int, ...], fan_in: int) -> torch.nn.Parameter:
        # Drawn on the CPU generator, as AutoRecNet draws its layers, then moved.
        draw = (torch.rand(shape, generator=generator) * 2 - 1) * fan_in**-0.5
        return torch.nn.Parameter(draw.to(codes.device))

    w_in, b_in = uniform((k, k_in), k_in), uniform((k,), k_in)
    w_out, b_out = uniform((k_in, k), k), uniform((k_in,), k)
    params = [w_in, b_in, w_out, b_out]
    opt = LeanRprop(params, lr=DEFAULT_LR["rprop"])
    for epoch in range(1, n_epochs + 1):
        opt.zero_grad()
        recon = act(act(codes @ w_in.t() + b_in) @ w_out.t() + b_out)  # (n_rows, k_in)
        sse = (recon - codes).pow(2).sum()
        loss = sse + 0.5 * lam * (w_in.pow(2).sum() + w_out.pow(2).sum())
        if not torch.isfinite(loss):
            raise ModelFitError(
                f"layer-wise pre-training diverged at epoch {epoch} of the {k}-unit layer "
                f"(loss {float(loss)}); try a larger pretrain_middle_lam"
            )
        loss.backward()
        opt.step()
        if epoch % 50 == 0 or epoch == n_epochs:
            log.info(
                "pre-training the %d-unit layer: epoch %d, code RMSE %.5f",
                k,
                epoch,
                float(sse.detach() / codes.numel()) ** 0.5,
            )
    return w_in.detach(), b_in.detach(), w_out.detach(), b_out.detach()


def stack_middle(
    codes: torch.Tensor,
    inner: tuple[int, ...],
    g: str,
    lam: float,
    n_epochs: int,
    generator: torch.Generator,
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Middle weights and biases, in AutoRecNet's order, of the palindrome ``inner`` (the hidden
    sizes between the outer layers, e.g. (250,) for 500-250-500) stacked on ``codes``: the
    outermost pair by :func:`fit_middle`, the rest recursively on its codes."""
    from autorec.models.autorec import ACTIVATIONS

    if not inner:
        return [], []
    w_in, b_in, w_out, b_out = fit_middle(codes, inner[0], g, lam, n_epochs, generator)
    deeper = ACTIVATIONS[g](codes @ w_in.t() + b_in)  # (n_rows, inner[0])
    weights, biases = stack_middle(deeper, inner[1:-1], g, lam, n_epochs, generator)
    return [w_in, *weights, w_out], [b_in, *biases, b_out]


def layerwise_start(
    cfg: AutoRecConfig, train: Ratings, val: Ratings | None
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Steps 1 and 2: the stacked state dict of a deep AutoRecNet of ``cfg.hidden`` and a record
    of the stages (step 1's chosen epoch, validation RMSE and seconds, step 2's seconds).

    Step 1 early-stops on ``val`` when it has ratings, else runs ``cfg.pretrain_epochs``."""
    from autorec.models.autorec import AutoRec

    check_layerwise(cfg)
    started = time.perf_counter()
    one_cfg = cfg.replace(
        hidden=cfg.hidden[:1],
        lam=cfg.pretrain_lam,
        optimizer="rprop",  # the experiment's step 1 (docs/experiments.md, issue 18)
        lr=None,
        input_dropout=0.0,
        layer_lam_scales=(),
        n_epochs=cfg.pretrain_epochs,
        warm_retrain_epochs=0,
        ranking_head=False,
        pretrain="none",
    )
    one: AutoRec = AutoRec(one_cfg).fit(train, val)
    h = one.history
    record: dict[str, Any] = {
        "stage1_best_epoch": h.best_epoch,
        "stage1_epochs_run": h.n_epochs,
        "stage1_val_rmse": h.val_rmse[h.best_epoch - 1] if h.val_rmse else None,
        "stage1_seconds": time.perf_counter() - started,
    }
    log.info(
        "layer-wise pre-training, step 1 (hidden %d, lambda %g): epoch %d of %d kept",
        cfg.hidden[0],
        cfg.pretrain_lam,
        h.best_epoch,
        h.n_epochs,
    )
    started = time.perf_counter()
    codes = one._all_codes().detach()  # (n_rows, k_1): from the training inputs only
    weights, biases = stack_middle(
        codes,
        cfg.hidden[1:-1],
        cfg.g,
        cfg.pretrain_middle_lam,
        cfg.pretrain_middle_epochs,
        torch.Generator().manual_seed(cfg.seed),
    )
    record["stage2_seconds"] = time.perf_counter() - started
    src = one.net
    state = {
        "encoder": src.encoder.detach(),
        "encoder_bias": src.encoder_bias.detach(),
        **{f"middle_weights.{i}": w for i, w in enumerate(weights)},
        **{f"middle_biases.{i}": b for i, b in enumerate(biases)},
        "decoder": src.decoder.detach(),
        "decoder_bias": src.decoder_bias.detach(),
    }
    return state, record
