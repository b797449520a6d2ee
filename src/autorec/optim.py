"""A memory-lean full-batch RProp.

Resilient propagation (Riedmiller and Braun 1993; the variant without weight backtracking that
``torch.optim.Rprop`` implements, often called iRprop-): every parameter has its own step size,
which grows by ``etaplus`` while the gradient keeps its sign, shrinks by ``etaminus`` when the sign
flips (and that step is skipped), and stays within ``step_sizes``; the update is
``theta -= step * sign(grad)``.

The algorithm only ever uses the *sign* of the previous gradient, so this implementation keeps it
as int8 instead of a float32 copy of the gradient, and updates each parameter in row chunks so its
temporaries stay small. For I-AutoRec on Netflix (two 480,189 x 500 matrices) that is 2.4 GB of
optimiser state and tens of MB of temporaries instead of 7.7 GB and several GB. The arithmetic is
the same as ``torch.optim.Rprop``'s, so results agree with it (a test checks this).

References:
    M. Riedmiller, H. Braun. A direct adaptive method for faster backpropagation learning: the
    RPROP algorithm. IEEE International Conference on Neural Networks, 1993.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch

_CHUNK_ELEMENTS = 1 << 22  # about 16 MB of float32 temporaries per chunk


class LeanRprop(torch.optim.Optimizer):
    def __init__(
        self,
        params: Iterable[torch.Tensor],
        lr: float = 0.01,
        etas: tuple[float, float] = (0.5, 1.2),
        step_sizes: tuple[float, float] = (1e-6, 50.0),
    ) -> None:
        if not lr > 0:
            raise ValueError(f"lr must be > 0, got {lr}")
        if not 0.0 < etas[0] < 1.0 < etas[1]:
            raise ValueError(f"etas must satisfy 0 < etaminus < 1 < etaplus, got {etas}")
        super().__init__(params, {"lr": lr, "etas": etas, "step_sizes": step_sizes})

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """As ``Optimizer.load_state_dict``, which casts every state tensor of a float parameter
        to the parameter's dtype: the previous signs go back to int8 (values -1, 0, 1 exactly),
        so a resumed run keeps both the memory footprint and the arithmetic."""
        super().load_state_dict(state_dict)
        for state in self.state.values():
            if "prev_sign" in state:
                state["prev_sign"] = state["prev_sign"].to(torch.int8)

    @torch.no_grad()
    def step(self, closure: Callable[[], torch.Tensor] | None = None) -> torch.Tensor | None:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            etaminus, etaplus = group["etas"]
            step_min, step_max = group["step_sizes"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["step_size"] = torch.full_like(p, group["lr"])
                    state["prev_sign"] = torch.zeros_like(p, dtype=torch.int8)
                # Step factor by agreement of signs, looked up at agree + 1: 0 flipped, 1 either
                # zero, 2 same sign. Every operation below is an int8 or float32 pass that
                # vectorises: an int64 index (``factors[agree.long() + 1]``) or a boolean
                # ``masked_fill_`` instead made the step 2.5x slower (docs/performance.md,
                # "RProp's step"), with the same result bit for bit.
                factors = torch.tensor([etaminus, 1.0, etaplus], dtype=p.dtype, device=p.device)
                flat_p = p.view(-1)
                flat_g = p.grad.reshape(-1)
                flat_step = state["step_size"].view(-1)
                flat_prev = state["prev_sign"].view(-1)
                for start in range(0, flat_p.numel(), _CHUNK_ELEMENTS):
                    end = start + _CHUNK_ELEMENTS
                    sign = torch.sign(flat_g[start:end]).to(torch.int8)  # (chunk,)
                    lookup = sign * flat_prev[start:end]  # +1 same sign, -1 flipped, 0 either zero
                    lookup += 1
                    step = flat_step[start:end]
                    step.mul_(torch.index_select(factors, 0, lookup.int()))
                    step.clamp_(step_min, step_max)
                    sign.mul_(lookup.clamp_(max=1))  # after a sign flip (lookup 0), skip this step
                    flat_p[start:end].addcmul_(sign.to(p.dtype), step, value=-1)
                    flat_prev[start:end].copy_(sign)
        return loss


class RestartingLBFGS(torch.optim.LBFGS):
    """``torch.optim.LBFGS`` that forgets its curvature pairs when a step leaves the parameters
    where they were, so the next step starts again from steepest descent.

    Called once per epoch (``max_iter=1``), torch's L-BFGS can stall for good: when the strong
    Wolfe search finds no acceptable point it returns a zero step, the stored pairs do not
    change, and every later call repeats the same failed search (a two-layer I-AutoRec on the
    test suite's synthetic data froze at epoch 8, the kernelised net on ML-100k at epoch 17:
    docs/experiments.md, "Kernelised AutoRec"). SciPy's
    L-BFGS-B, which the kernelNet authors ran in rounds of 50 iterations, restarts its memory at
    every round; restarting only on a stall keeps every step before one exactly as before.
    Costs one copy of the parameters per step.
    """

    @torch.no_grad()
    def step(self, closure: Callable[[], torch.Tensor]) -> torch.Tensor:  # type: ignore[override]
        before = [p.detach().clone() for p in self.param_groups[0]["params"]]
        loss = super().step(closure)
        params = self.param_groups[0]["params"]
        if all(torch.equal(a, p) for a, p in zip(before, params, strict=True)):
            self.state.clear()
        return loss
