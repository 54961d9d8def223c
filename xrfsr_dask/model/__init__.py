"""The Residual Dense Network: architecture, training on simulated scans, weights with model cards.

- :func:`build_rdn` / :class:`RDN` / :data:`PRESETS`: the network;
- :func:`train` / :class:`TrainSettings` / :class:`DataSettings`: training
  on pairs simulated on the fly from structure families (NMC particles,
  cells, fibres, porous media, ...) with a randomised forward model;
- :func:`adapt`: fine-tuning on the user's own LR maps, pairs made by the
  forward model (self-supervised);
- :func:`save_model` / :func:`load_model`: safetensors weights and JSON cards,
  bundled (:func:`bundled_models`) or at any local or fsspec path;
- :func:`predict`: counts in, counts out, on in-memory maps.
"""

from xrfsr_dask.model.adapt import adapt
from xrfsr_dask.model.data import DataSettings, PairSource, map_scale
from xrfsr_dask.model.infer import predict, resolve_device
from xrfsr_dask.model.rdn import PRESETS, RDN, RDNConfig, build_rdn
from xrfsr_dask.model.train import TrainSettings, evaluate, fixed_pairs, train
from xrfsr_dask.model.weights import (
    CARD_FORMAT,
    DEFAULT_MODEL,
    DEFAULT_MODELS,
    ModelCardError,
    bundled_models,
    load_model,
    model_serves,
    save_model,
)

__all__ = [
    "CARD_FORMAT",
    "DEFAULT_MODEL",
    "DEFAULT_MODELS",
    "PRESETS",
    "RDN",
    "DataSettings",
    "ModelCardError",
    "PairSource",
    "RDNConfig",
    "TrainSettings",
    "adapt",
    "build_rdn",
    "bundled_models",
    "evaluate",
    "load_model",
    "map_scale",
    "model_serves",
    "predict",
    "resolve_device",
    "save_model",
    "fixed_pairs",
    "train",
]
