"""Weights on disk: a safetensors file and a JSON model card beside it.

``NAME.safetensors`` holds the tensors; ``NAME.json`` the card:

- ``format``: :data:`CARD_FORMAT`;
- ``name``, ``library_version``, ``created``;
- ``architecture``: the :class:`~xrfsr_dask.model.RDNConfig` fields;
- ``parameters``: the number of trainable parameters;
- ``normalisation``: ``{"method": "quantile-scale", "quantile": q}``;
- ``training``: the command, the data settings and optimiser settings;
- ``metrics``: the test-set figures measured after training;
- ``weights_sha256``: the checksum of the safetensors file.

:func:`load_model` takes the name of a bundled model (shipped as package
data; :func:`bundled_models` lists them) or any local or fsspec path/URL of
a ``.safetensors`` file (``s3://bucket/models/m.safetensors``). Nothing is
fetched from a model hub.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import importlib.resources
import json
import os
from pathlib import Path
from typing import Any

import fsspec
import torch
from safetensors.torch import load as load_tensors
from safetensors.torch import save as save_tensors

from xrfsr_dask._version import __version__
from xrfsr_dask.errors import ModelCardError, SourceNotFoundError, StoreExistsError
from xrfsr_dask.model.rdn import RDN, RDNConfig

__all__ = [
    "CARD_FORMAT", "DEFAULT_MODEL", "DEFAULT_MODELS", "ModelCardError", "bundled_folder", "bundled_models",
    "load_model", "model_serves", "save_model",
]

CARD_FORMAT = "xrfsr_dask.rdn/1"
DEFAULT_MODEL = "rdn-small-x2"
"""The bundled model used when none is named (trained on maps and projections of every training family)."""
DEFAULT_MODELS: dict[str, str] = {"maps": DEFAULT_MODEL, "series": DEFAULT_MODEL}
"""The bundled model :func:`~xrfsr_dask.enhance` uses for each kind of data when none is named."""
_SERVES = {"maps": ("maps",), "projections": ("series",), "mixed": ("maps", "series")}
_PACKAGE = "xrfsr_dask.model"


def _stem(path: str | os.PathLike) -> str:
    """``path`` without a ``.safetensors`` suffix (other dots, as in ``rdn-v1.2``, are kept)."""
    text = os.fspath(path)
    return text[: -len(".safetensors")] if text.endswith(".safetensors") else text


def bundled_folder() -> Any:
    """The package-data folder holding the bundled models."""
    return importlib.resources.files(_PACKAGE) / "bundled"


def bundled_models() -> list[str]:
    """Names of the models shipped with the package."""
    folder = bundled_folder()
    return sorted(p.name[: -len(".safetensors")] for p in folder.iterdir() if p.name.endswith(".safetensors"))


def model_serves(card: dict[str, Any]) -> tuple[str, ...] | None:
    """The kinds of data (``"maps"``, ``"series"``) a model was trained for, from its card; None if unknown.

    Read from the card's training data settings (``sample``: maps, projections
    or mixed); a card without them (a network built or trained elsewhere)
    makes no claim.
    """
    try:
        sample = card["training"]["settings"]["data"].get("sample", "maps")
    except (KeyError, TypeError, AttributeError):
        return None
    return _SERVES.get(sample)


def save_model(model: RDN, path: str | os.PathLike, *, card: dict[str, Any] | None = None,
               overwrite: bool = False) -> Path:
    """Write ``PATH.safetensors`` and ``PATH.json`` (the card).

    Parameters
    ----------
    model
        The network; its ``card`` is the base of the written card.
    path
        File path, with or without the ``.safetensors`` suffix.
    card
        Entries added to (and overriding) ``model.card``: ``training``,
        ``metrics``, ``name``.
    overwrite
        Replace existing files; otherwise an existing file is an error.

    Returns
    -------
    pathlib.Path
        The safetensors file.
    """
    base = _stem(path)
    weights, card_path = Path(f"{base}.safetensors"), Path(f"{base}.json")
    for target in (weights, card_path):
        if target.exists() and not overwrite:
            raise StoreExistsError(f"{target} exists; pass overwrite=True to replace it.")
    state = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in model.state_dict().items()}
    blob = save_tensors(state, metadata={"format": CARD_FORMAT})
    full = {
        **model.card,
        "name": Path(base).name,
        **(card or {}),
        "format": CARD_FORMAT,
        "library_version": __version__,
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "architecture": dataclasses.asdict(model.config),
        "parameters": model.n_parameters,
        "weights_sha256": hashlib.sha256(blob).hexdigest(),
    }
    full.setdefault("normalisation", {"method": "quantile-scale", "quantile": 0.999})
    weights.parent.mkdir(parents=True, exist_ok=True)
    weights.write_bytes(blob)
    card_path.write_text(json.dumps(full, indent=2) + "\n")
    model.card = full
    return weights


def _read(url: str) -> bytes:
    try:
        with fsspec.open(url, "rb") as f:
            return f.read()
    except FileNotFoundError as err:
        raise SourceNotFoundError(
            f"no model file at {url!r}; pass a bundled name ({', '.join(bundled_models())}) or the path "
            "of a .safetensors file with its .json card beside it."
        ) from err


def _locate(name_or_path: str | os.PathLike) -> tuple[str, str]:
    text = os.fspath(name_or_path)
    if text in bundled_models():
        folder = bundled_folder()
        return str(folder / f"{text}.safetensors"), str(folder / f"{text}.json")
    base = _stem(text)
    if "://" not in base and not Path(f"{base}.safetensors").exists():
        raise SourceNotFoundError(
            f"{text!r} is neither a bundled model ({', '.join(bundled_models())}) nor an existing "
            ".safetensors file."
        )
    return f"{base}.safetensors", f"{base}.json"


def load_model(name_or_path: str | os.PathLike = DEFAULT_MODEL) -> RDN:
    """Load a network and its card, checking one against the other.

    Parameters
    ----------
    name_or_path
        A bundled model's name (default :data:`DEFAULT_MODEL`), or a local
        or fsspec path/URL of a ``.safetensors`` file (suffix optional) with
        its ``.json`` card beside it.

    Returns
    -------
    RDN
        The network in eval mode on the CPU, its card in ``model.card``.

    Raises
    ------
    SourceNotFoundError
        No such bundled model or file.
    ModelCardError
        The card is not valid JSON, has the wrong format, or names an
        architecture, checksum or tensors the weights do not match (the
        message names the mismatch).

    Examples
    --------
    >>> net = load_model()
    >>> net.config.scale, net.card["name"]
    (2, 'rdn-small-x2')
    """
    weights_url, card_url = _locate(name_or_path)
    blob = _read(weights_url)
    try:
        card = json.loads(_read(card_url))
    except json.JSONDecodeError as err:
        raise ModelCardError(f"the model card {card_url} is not valid JSON: {err}") from err
    if not isinstance(card, dict) or card.get("format") != CARD_FORMAT:
        raise ModelCardError(f"{card_url} is not an xrfsr_dask model card (format {CARD_FORMAT!r} expected).")
    digest = hashlib.sha256(blob).hexdigest()
    if card.get("weights_sha256") not in (None, digest):
        raise ModelCardError(
            f"{weights_url} does not match its card: sha256 {digest[:12]}... but the card records "
            f"{str(card['weights_sha256'])[:12]}...; the weights or the card were replaced."
        )
    try:
        # Cards written before the count-conserving layer existed describe networks without it.
        config = RDNConfig(**{"conserve_counts": False, **card["architecture"]})
    except (KeyError, TypeError, ValueError) as err:
        raise ModelCardError(f"the card {card_url} has no valid 'architecture': {err}") from err
    quantile = card.get("normalisation", {}).get("quantile") if isinstance(card.get("normalisation"), dict) else None
    if not (isinstance(quantile, (int, float)) and 0 < quantile <= 1):
        raise ModelCardError(
            f"the card {card_url} needs 'normalisation': {{'method': 'quantile-scale', 'quantile': q}} with "
            f"0 < q <= 1; got {card.get('normalisation')!r}."
        )
    model = RDN(config)
    try:
        state = load_tensors(blob)
    except Exception as err:  # safetensors raises its own error type for any malformed file
        raise ModelCardError(f"{weights_url} is not a readable safetensors file: {err}") from err
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    extra = sorted(set(state) - set(expected))
    wrong = [f"{k}: file {tuple(state[k].shape)} vs card {tuple(v.shape)}"
             for k, v in expected.items() if k in state and state[k].shape != v.shape]
    if missing or extra or wrong:
        parts = [f"missing {missing[:3]}" if missing else "", f"unexpected {extra[:3]}" if extra else "",
                 f"shapes differ: {wrong[:3]}" if wrong else ""]
        raise ModelCardError(
            f"the weights in {weights_url} do not fit the architecture in its card {config}: "
            + "; ".join(p for p in parts if p) + "."
        )
    model.load_state_dict(state)
    model.card = card
    return model.eval()
