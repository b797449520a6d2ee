"""Model registry: ``--model NAME`` -> (class, config overrides).

Adding a model is a one-file change: write ``models/<family>.py`` with a ``Recommender``
subclass and list it in ``_REGISTRY`` below.
"""

from __future__ import annotations

from typing import Any

from autorec.errors import ConfigError
from autorec.models.autorec import AutoRec
from autorec.models.base import BaseConfig, Recommender
from autorec.models.baselines import BiasBaseline
from autorec.models.biased_mf import BiasedMF
from autorec.models.ease import Ease
from autorec.models.ensemble import Ensemble
from autorec.models.glocal import GLocalK
from autorec.models.knn import ItemKNN
from autorec.models.llorma import Llorma
from autorec.models.popularity import Popularity
from autorec.models.rbm import RBM

# name -> (class, config fields that define the named variant)
_REGISTRY: dict[str, tuple[type[Recommender], dict[str, Any]]] = {
    "i-autorec": (AutoRec, {"variant": "item"}),
    "u-autorec": (AutoRec, {"variant": "user"}),
    # kernelNet (Muller, Martel, Indiveri, ICML 2018): I-AutoRec with two kernelised hidden
    # layers of 500; lam and kernel_lam are the authors' lambda_2 = 60, lambda_s = 0.013 on this
    # package's loss scale (x2: theirs halves the squared error); L-BFGS as in their code.
    "i-kernelnet": (
        AutoRec,
        {
            "variant": "item",
            "hidden": (500, 500),
            "kernel_dim": 5,
            "lam": 120.0,
            "kernel_lam": 0.026,
            "optimizer": "lbfgs",
        },
    ),
    # GLocal-K (Han et al., CIKM 2021): kernelNet pre-trained, then fine-tuned on the rating
    # matrix smoothed by a global convolution kernel (models/glocal.py).
    "glocal-k": (GLocalK, {}),
    "bias": (BiasBaseline, {}),
    "biased-mf": (BiasedMF, {}),
    "item-knn": (ItemKNN, {}),
    "llorma": (Llorma, {}),
    "i-rbm": (RBM, {"variant": "item"}),
    "u-rbm": (RBM, {"variant": "user"}),
    "pop": (Popularity, {}),
    "ease": (Ease, {}),
    "ensemble": (Ensemble, {}),
}

# name -> the validation grid of a preset whose best values differ from its class's grid. The
# i-kernelnet grid brackets the authors' lambda_2 = 60 (lam 120 on this package's loss scale) by
# 2x each way, plus 30 because ML-100k's 10x smaller data term chose lam 40 on u1
# (docs/experiments.md, "Kernelised AutoRec"). Each kernelised fit costs about 8x an I-AutoRec fit.
_GRIDS: dict[str, dict[str, tuple[Any, ...]]] = {
    "i-kernelnet": {"lam": (30.0, 60.0, 120.0, 240.0)},
}

MODEL_NAMES = tuple(_REGISTRY)


def get_model_class(name: str) -> type[Recommender]:
    if name not in _REGISTRY:
        raise ConfigError(f"unknown model {name!r}; known models: {', '.join(MODEL_NAMES)}")
    return _REGISTRY[name][0]


def tuning_grid(name: str) -> dict[str, tuple[Any, ...]]:
    """The validation grid the protocol searches for the registered ``name``: the preset's own
    grid if it has one, else its class's ``tuning_grid``."""
    cls = get_model_class(name)
    return dict(_GRIDS.get(name, cls.tuning_grid))


def model_config(name: str, **overrides: Any) -> Any:
    """The config ``make_model(name, **overrides)`` gives its model (the registered preset, then
    ``overrides``, checked the same way), without making the model."""
    cls = get_model_class(name)
    fields = {**_REGISTRY[name][1], **overrides}
    known = set(cls.config_class.__dataclass_fields__)
    unknown = sorted(set(fields) - known)
    if unknown:
        raise ConfigError(f"model {name!r} has no option(s) {', '.join(unknown)}")
    return cls.config_class(**fields)


def make_model(name: str, **overrides: Any) -> Recommender:
    """A fresh model of the registered ``name``; ``overrides`` are config fields."""
    return get_model_class(name)(model_config(name, **overrides))


__all__ = [
    "MODEL_NAMES",
    "AutoRec",
    "BaseConfig",
    "BiasBaseline",
    "Recommender",
    "make_model",
    "tuning_grid",
]
