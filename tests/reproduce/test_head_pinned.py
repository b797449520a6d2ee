"""``autorec reproduce`` runs the paper's models: the I-AutoRec ranking head, on by default since
issue 14, is pinned off there, so the committed cells stay the paper's model bit for bit."""

from __future__ import annotations

from autorec.models import make_model
from autorec.models.autorec_rank import head_wanted
from autorec.reproduce.cells import Cell, cell_overrides


def test_reproduce_pins_the_ranking_head_off() -> None:
    for model in ("i-autorec", "u-autorec"):
        cell = Cell(setting=model, model=model, overrides=(), seed=0)
        for quick in (False, True):
            overrides = cell_overrides(cell, quick)
            assert overrides["ranking_head"] is False
            assert not head_wanted(make_model(model, **overrides).config)
    # The plain default would give i-autorec a head: the pin is what keeps it off.
    assert head_wanted(make_model("i-autorec").config)
    # Models without a head get no such field.
    assert "ranking_head" not in cell_overrides(Cell("bias", "bias", (), 0), False)
