from __future__ import annotations

import pytest
import torch

from autorec import optim as lean
from autorec.optim import LeanRprop


def _run(opt_cls, steps: int = 25) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    a = torch.randn(37, 5, generator=g, requires_grad=True)
    b = torch.randn(11, generator=g, requires_grad=True)
    target = torch.randn(37, 5, generator=g)
    opt = opt_cls([a, b], lr=0.05)
    for _ in range(steps):
        opt.zero_grad()
        loss = ((a - target) ** 2).sum() + (b.sin() ** 2).sum() + (a.sum() * b[0]) ** 2
        loss.backward()
        opt.step()
    return [a.detach().clone(), b.detach().clone()]


@pytest.mark.parametrize("chunk", [7, 1 << 22])
def test_lean_rprop_matches_torch_rprop(monkeypatch, chunk) -> None:
    # Same algorithm (iRprop-, torch's defaults etas=(0.5, 1.2), step_sizes=(1e-6, 50)): the
    # parameters must agree exactly after many steps, also when updated in small chunks.
    monkeypatch.setattr(lean, "_CHUNK_ELEMENTS", chunk)
    ours = _run(LeanRprop)
    theirs = _run(lambda p, lr: torch.optim.Rprop(p, lr=lr, foreach=False))
    for x, y in zip(ours, theirs, strict=True):
        torch.testing.assert_close(x, y, rtol=0, atol=0)


def test_state_is_small() -> None:
    p = torch.zeros(100, 10, requires_grad=True)
    opt = LeanRprop([p])
    p.grad = torch.ones_like(p)
    opt.step()
    assert opt.state[p]["prev_sign"].dtype == torch.int8
    # one step of size lr = 0.01 against the gradient's sign
    assert torch.allclose(p, torch.full_like(p, -0.01))


def test_state_dict_round_trip_keeps_int8_signs_and_the_trajectory() -> None:
    # A checkpoint reloads the optimiser through load_state_dict, which in torch casts state
    # tensors of float parameters to float32: the signs must come back as int8, and 20 steps
    # split 8 + (save, load into a fresh optimiser) + 12 must equal 20 steps in one go.
    def loss_of(p: torch.Tensor) -> torch.Tensor:
        return ((p - 1.5) ** 2).sum() + (p.sin() ** 2).sum()

    def steps(opt: LeanRprop, p: torch.Tensor, n: int) -> None:
        for _ in range(n):
            opt.zero_grad()
            loss_of(p).backward()
            opt.step()

    g = torch.Generator().manual_seed(0)
    start = torch.randn(9, 4, generator=g)
    straight = start.clone().requires_grad_(True)
    steps(LeanRprop([straight], lr=0.05), straight, 20)

    split = start.clone().requires_grad_(True)
    first = LeanRprop([split], lr=0.05)
    steps(first, split, 8)
    saved = first.state_dict()
    second = LeanRprop([split], lr=0.05)
    second.load_state_dict(saved)
    assert second.state[split]["prev_sign"].dtype == torch.int8
    steps(second, split, 12)
    torch.testing.assert_close(split, straight, rtol=0, atol=0)


def test_lbfgs_keeps_going_after_a_failed_line_search(low_rank_split) -> None:
    # A two-layer I-AutoRec on the contract data: torch's L-BFGS, called once per epoch, froze at
    # train RMSE 0.8707 from epoch 8 on (a zero step after a failed line search, then the same
    # search forever); restarting the memory after a step that does not move reaches 0.43 by
    # epoch 28 (both measured with one thread).
    from autorec.models import make_model

    model = make_model("i-autorec", hidden=(16, 16), lam=1.0, optimizer="lbfgs", n_epochs=30)
    model.fit(low_rank_split.train)
    curve = model.history.train_rmse
    assert curve[-1] < curve[9] - 0.1, curve


def test_restarting_lbfgs_clears_its_memory_after_a_step_that_does_not_move() -> None:
    x = torch.zeros(3, requires_grad=True)
    opt = lean.RestartingLBFGS([x], max_iter=1)

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = ((x - 1.0) ** 2).sum()
        loss.backward()
        return loss

    opt.step(closure)  # a real step: the curvature memory is kept
    assert opt.state and not torch.equal(x, torch.zeros(3))
    with torch.no_grad():
        x.fill_(1.0)  # the minimum: a zero gradient, so the next step does not move
    opt.step(closure)
    assert not opt.state
