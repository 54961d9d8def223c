"""Self-supervised adaptation of a trained RDN to the user's own scans.

A network trained on simulated structures (:mod:`xrfsr_dask.families`) may
meet structures it never saw. :func:`adapt` fine-tunes it on the measured maps alone, with pairs made
by the forward model one octave coarser (as in zero-shot super-resolution,
Shocher et al. 2018): the measured map ``M`` (step ``s``) is the target, and
its simulated scan at ``scale·s`` with the measured data's probe, scan mode
and fast axis, with Poisson noise drawn on the expected counts, is the input.
A network that learns to undo that degradation on ``M`` is then applied to
``M`` itself, one octave finer, which assumes that the structure looks alike
across the two scales.

For every map (each element, and each angle of a series) the pairs are
simulated at each of the ``scale²`` sampling phases (the coarse scan starting
at pixel ``(dy, dx)`` of ``M``); Poisson noise is drawn anew every epoch.
Patches are normalised as at inference: the input and the target are divided
by the card's quantile of the whole noisy input map
(:func:`~xrfsr_dask.model.map_scale`).
"""

from __future__ import annotations

import copy
import hashlib
import math
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import xarray as xr
from torch.nn import functional

from xrfsr_dask import _progress
from xrfsr_dask.errors import NonFiniteCountsError, StoreExistsError
from xrfsr_dask.model.data import _augment, map_scale
from xrfsr_dask.model.infer import DEFAULT_QUANTILE, resolve_device
from xrfsr_dask.model.rdn import RDN, upsample_bicubic
from xrfsr_dask.model.weights import load_model, save_model
from xrfsr_dask.probe import GaussianProbe, TailedProbe, as_probe
from xrfsr_dask.schema import validate
from xrfsr_dask.simulate import simulate_scan

__all__ = ["EVAL_PATCHES", "adapt"]

EVAL_PATCHES = 64
"""Fixed self-supervised pairs on which the card's loss before and after adaptation is measured."""
FINAL_LR_FRACTION = 0.1
"""The learning rate is cosine-annealed from ``learning_rate`` to this fraction of it."""
_EVAL_DRAW = 0
"""Epoch number of the noise draw and patches of the evaluation pairs (training epochs start at 1)."""


@dataclass
class _Pairs:
    """Expected coarse scans and targets of every map at every sampling phase (counts, float32)."""

    expected: list[np.ndarray]
    targets: list[np.ndarray]
    labels: list[tuple[Any, ...]]
    scale: int
    quantile: float

    def draw(self, rng: np.random.Generator) -> tuple[list[np.ndarray], np.ndarray]:
        """One Poisson draw of every coarse scan, normalised, and the scale each was divided by."""
        noisy = [rng.poisson(np.where(e > 0, e, 0.0)).astype(np.float32) for e in self.expected]
        norms = np.array([float(map_scale(n, self.quantile)) for n in noisy])
        return [n / s for n, s in zip(noisy, norms, strict=True)], norms

    def batch(self, rng: np.random.Generator, inputs: list[np.ndarray], norms: np.ndarray, size: int,
              patch: int) -> tuple[np.ndarray, np.ndarray]:
        """``size`` random patches with random flips and transposes: input ``(size, 1, P, P)``, target ``sP``."""
        s = self.scale
        lr = np.empty((size, 1, patch, patch), np.float32)
        hr = np.empty((size, 1, patch * s, patch * s), np.float32)
        picks = rng.integers(len(inputs), size=size)
        flips = rng.integers(2, size=(size, 3)).astype(bool)
        for k, index in enumerate(picks):
            image = inputs[index]
            i = int(rng.integers(image.shape[0] - patch + 1))
            j = int(rng.integers(image.shape[1] - patch + 1))
            target = self.targets[index][i * s:(i + patch) * s, j * s:(j + patch) * s] / norms[index]
            lr[k, 0] = _augment(image[i:i + patch, j:j + patch], *flips[k])
            hr[k, 0] = _augment(target, *flips[k])
        return lr, hr


def _probe_record(probe: GaussianProbe | TailedProbe, origin: str) -> dict[str, Any]:
    record = {"kind": type(probe).__name__, "fwhm_nm": list(probe.fwhm_pair_nm),
              "angle_deg": float(probe.angle_deg), "from": origin}
    if isinstance(probe, TailedProbe):
        record.update(tail=probe.tail, tail_width=probe.tail_width, lobes=probe.lobes, lobe_offset=probe.lobe_offset)
    return record


def _open(maps: Any, storage_options: Mapping[str, Any] | None) -> tuple[xr.DataArray, str]:
    if isinstance(maps, (str, os.PathLike)):
        from xrfsr_dask.io.store import open_xrf

        return open_xrf(os.fspath(maps), storage_options=storage_options), os.fspath(maps)
    if not isinstance(maps, xr.DataArray):
        raise TypeError(
            f"maps must be an (element, y, x) or (element, angle, y, x) DataArray or the URL/path of a store; "
            f"got {type(maps).__name__}."
        )
    return maps, "in-memory DataArray"


def _content_sha256(values: np.ndarray) -> str:
    """sha256 of the values as little-endian float64 in C order (the same for any storage dtype)."""
    return hashlib.sha256(np.ascontiguousarray(values, dtype="<f8").tobytes()).hexdigest()


def _make_pairs(maps: xr.DataArray, values: np.ndarray, *, scale: int, probe: Any, patch: int,
                quantile: float) -> _Pairs:
    """Simulate the coarse scan of every map at every sampling phase that holds a patch."""
    ny, nx = maps.sizes["y"], maps.sizes["x"]
    coarse = (ny // scale, nx // scale)
    if min(coarse) < patch:
        raise ValueError(
            f"the maps are {ny} x {nx} pixels; simulated at {scale} times the step (the model's scale) they "
            f"are {coarse[0]} x {coarse[1]} pixels, smaller than one training patch (patch={patch}). Pass a "
            f"smaller patch= (at least 4, e.g. patch={max(4, min(coarse))}) or adapt on larger maps."
        )
    step = tuple(scale * float(v) for v in maps.attrs["step_nm"])
    measured = maps.copy(data=values.astype(np.float32))
    lead = [d for d in maps.dims if d not in ("y", "x")]
    expected, targets, labels = [], [], []
    for dy in range(scale):
        for dx in range(scale):
            part = measured.isel(y=slice(dy, None), x=slice(dx, None))
            if min(part.sizes["y"] // scale, part.sizes["x"] // scale) < patch:
                continue
            lr = simulate_scan(part, step_nm=step, probe=probe, scan_mode=maps.attrs.get("scan_mode", "step"),
                               fast_axis=maps.attrs.get("fast_axis", "x"), noise=False).values
            truth = part.values[..., :lr.shape[-2] * scale, :lr.shape[-1] * scale]
            for index in np.ndindex(*lr.shape[:-2]):
                expected.append(np.asarray(lr[index], np.float64))
                targets.append(np.asarray(truth[index], np.float32))
                labels.append((*(str(maps[d].values[i]) for d, i in zip(lead, index, strict=True)), dy, dx))
    return _Pairs(expected, targets, labels, scale, quantile)


def _l1(model: RDN, lr: np.ndarray, hr: np.ndarray, device: torch.device) -> tuple[float, float]:
    """Mean L1 of the network and of bicubic upsampling on fixed pairs (one batch: they are few and small)."""
    model.eval()
    with torch.inference_mode():
        x, y = torch.from_numpy(lr).to(device), torch.from_numpy(hr).to(device)
        return (float(functional.l1_loss(model(x), y)),
                float(functional.l1_loss(upsample_bicubic(x, model.config.scale), y)))


def _check_settings(**values: Any) -> None:
    for name in ("epochs", "steps_per_epoch", "batch_size"):
        value = values[name]
        if not (isinstance(value, (int, np.integer)) and value >= 1):
            raise ValueError(f"{name} must be an integer >= 1; got {value!r}.")
    if not (isinstance(values["patch"], (int, np.integer)) and values["patch"] >= 4):
        raise ValueError(f"patch must be an integer >= 4 (LR pixels per side of the input); got {values['patch']!r}.")
    if not (isinstance(values["seed"], (int, np.integer)) and values["seed"] >= 0):
        raise ValueError(f"seed must be an integer >= 0; got {values['seed']!r}.")
    rate = values["learning_rate"]
    if not (isinstance(rate, (int, float)) and math.isfinite(rate) and rate > 0):
        raise ValueError(f"learning_rate must be a positive number (e.g. 1e-4 for fine-tuning); got {rate!r}.")


def adapt(
    model: RDN | str | os.PathLike,
    maps: xr.DataArray | str | os.PathLike,
    *,
    probe: float | Sequence[float] | GaussianProbe | TailedProbe | None = None,
    epochs: int = 5,
    steps_per_epoch: int = 20,
    batch_size: int = 16,
    learning_rate: float = 1e-4,
    patch: int = 16,
    seed: int = 0,
    out: str | os.PathLike | None = None,
    name: str | None = None,
    overwrite: bool = False,
    device: str = "auto",
    storage_options: Mapping[str, Any] | None = None,
    progress: bool = True,
) -> RDN:
    """Fine-tune a network on the user's own LR maps with pairs made by the forward model.

    Parameters
    ----------
    model
        The network to start from: an :class:`~xrfsr_dask.model.RDN`, a
        bundled model's name or the path/URL of a ``.safetensors`` file. It
        is not modified.
    maps
        The measured maps ``(element, y, x)`` or series ``(element, angle, y,
        x)`` of the data model, NumPy or dask backed, or the URL/path of a
        store (opened with :func:`~xrfsr_dask.open_xrf`). Every element
        (and angle) is a separate training map; all of it is read into
        memory.
    probe
        The probe of the measured scan: FWHM in nm, ``(major, minor)``, a
        :class:`~xrfsr_dask.probe.GaussianProbe` (e.g. from a fit) or a
        :class:`~xrfsr_dask.probe.TailedProbe`. Default: the maps'
        ``attrs["probe_fwhm_nm"]``.
    epochs, steps_per_epoch, batch_size
        ``epochs x steps_per_epoch`` Adam steps on batches of ``batch_size``
        patches; the Poisson noise of the inputs is drawn anew each epoch.
    learning_rate
        Adam's step size, cosine-annealed to :data:`FINAL_LR_FRACTION` of it
        over the run; small, as for fine-tuning.
    patch
        Input pixels per side of a training patch (the target is ``scale``
        times larger), at the coarse step ``scale x step``.
    seed
        Seeds the noise and the patches; the same seed gives the same
        weights (on the same device).
    out
        Where to write the adapted model (``.safetensors`` suffix optional;
        the card is written beside it); nothing is written when ``None``.
    name
        The adapted model's name in its card; default ``<base name>-adapted``.
    overwrite
        Replace existing files at ``out``.
    device
        ``"auto"`` (CUDA when available), ``"cpu"`` or ``"cuda[:N]"``.
    storage_options
        fsspec options for opening ``maps`` given as a URL.
    progress
        Show a progress bar with the training loss.

    Returns
    -------
    RDN
        A new network in eval mode on the CPU. Its card copies the base
        card (architecture, normalisation, how the base was trained) under a
        new name and adds an ``adaptation`` record: the data (source,
        dims, shape, sha256 of the values, elements), the probe, step,
        scan mode and fast axis of the pairs, the settings, the base
        model's name, ``weights_sha256`` and metrics, the seconds taken,
        and the mean L1 loss before and after (and of bicubic upsampling)
        on :data:`EVAL_PATCHES` fixed self-supervised pairs.

    Raises
    ------
    MissingMetadataError
        No ``probe=`` and no ``attrs["probe_fwhm_nm"]``.
    ValueError
        Maps too small for one patch at ``scale`` times the step, settings
        out of range, or non-finite counts (:class:`NonFiniteCountsError`).
    SchemaError
        Not maps or a series of the data model.
    StoreExistsError
        ``out`` exists and ``overwrite`` is False.

    Notes
    -----
    The pairs are one octave coarser than the data the network is then
    applied to: the input has the probe blur twice (once from the beamline,
    once simulated) on a step ``scale`` times coarser, the target once. That
    the correction learned there carries over one octave finer is the
    assumption of zero-shot super-resolution; how far it holds depends on
    the sample, and ``benchmarks/adapt.py`` measures it. The loss recorded
    in the card is on pairs the network was trained on (a fresh noise draw),
    so it shows that the fit worked, not that the output is closer to the
    truth. Maps that are too small hold few distinct patches: adapt briefly
    with a small learning rate, or the network learns the noise of the map.

    References
    ----------
    Shocher, A., Cohen, N. & Irani, M. "Zero-Shot" Super-Resolution using
    Deep Internal Learning. CVPR 2018, https://doi.org/10.1109/CVPR.2018.00329

    Examples
    --------
    >>> from xrfsr_dask import nmc_particle, simulate_scan
    >>> from xrfsr_dask.model import build_rdn
    >>> lr = simulate_scan(nmc_particle((128, 128), pixel_nm=5.0), step_nm=20.0, probe=30.0,
    ...                    noise=True)
    >>> net = adapt(build_rdn("tiny"), lr, epochs=1, steps_per_epoch=2, batch_size=4, patch=8,
    ...             progress=False)
    >>> net.card["adaptation"]["data"]["shape"]
    [4, 32, 32]
    """
    started = time.perf_counter()
    _check_settings(epochs=epochs, steps_per_epoch=steps_per_epoch, batch_size=batch_size,
                    learning_rate=learning_rate, patch=patch, seed=seed)
    if out is not None:
        stem = os.fspath(out).removesuffix(".safetensors")
        existing = [f for f in (f"{stem}.safetensors", f"{stem}.json") if os.path.exists(f)]
        if existing and not overwrite:
            raise StoreExistsError(f"{existing[0]} exists; pass overwrite=True (--overwrite) to replace it, "
                                   "or choose another out=.")
    maps, source = _open(maps, storage_options)
    maps = validate(maps, ("maps", "series"), caller="adapt")
    probe_used = as_probe(probe, maps, name="maps", purpose="the forward model that makes the training pairs")
    probe_origin = "probe=" if probe is not None else "attrs['probe_fwhm_nm']"
    base = model if isinstance(model, RDN) else load_model(model)
    values = np.asarray(maps.values)
    if values.dtype.kind not in "fiu":
        raise TypeError(f"maps must hold numbers; got dtype {values.dtype}.")
    bad = ~np.isfinite(values)
    if bad.any():
        raise NonFiniteCountsError(
            f"maps hold {int(bad.sum())} non-finite pixel(s), e.g. at {tuple(int(v) for v in np.argwhere(bad)[0])}; "
            "the forward model needs counts everywhere. Fill them (maps.fillna(...)) or crop them away."
        )
    scale = base.config.scale
    quantile = float(base.card.get("normalisation", {}).get("quantile", DEFAULT_QUANTILE))
    pairs = _make_pairs(maps, values, scale=scale, probe=probe_used, patch=patch, quantile=quantile)

    dev = resolve_device(device)
    net = copy.deepcopy(base).to(device=dev, memory_format=torch.contiguous_format)  # type: ignore[call-overload]  # not in the stubs
    rng = np.random.default_rng([seed, _EVAL_DRAW])
    inputs, norms = pairs.draw(rng)
    eval_lr, eval_hr = pairs.batch(rng, inputs, norms, EVAL_PATCHES, patch)
    before, bicubic = _l1(net, eval_lr, eval_hr, dev)

    optimiser = torch.optim.Adam(net.parameters(), lr=learning_rate)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(
        optimiser, T_max=epochs * steps_per_epoch, eta_min=learning_rate * FINAL_LR_FRACTION)
    bar = _progress.bar(total=epochs, desc=f"adapting {base.card.get('name', 'model')}", unit="epoch",
                        disable=not progress)
    history = []
    for epoch in range(1, epochs + 1):
        rng = np.random.default_rng([seed, epoch])
        inputs, norms = pairs.draw(rng)
        net.train()
        losses = []
        for _ in range(steps_per_epoch):
            lr, hr = (torch.from_numpy(a).to(dev) for a in pairs.batch(rng, inputs, norms, batch_size, patch))
            loss = functional.l1_loss(net(lr), hr)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            schedule.step()
            losses.append(float(loss.detach()))
        history.append(round(float(np.mean(losses)), 6))
        bar.update()
        bar.set_postfix(l1=f"{history[-1]:.4f}")
    bar.close()
    after, _ = _l1(net, eval_lr, eval_hr, dev)
    net = net.to("cpu").eval()

    base_card = base.card
    settings = {"epochs": epochs, "steps_per_epoch": steps_per_epoch, "batch_size": batch_size,
                "learning_rate": learning_rate, "final_learning_rate": learning_rate * FINAL_LR_FRACTION,
                "patch": patch, "seed": seed, "eval_patches": EVAL_PATCHES, "optimiser": "Adam",
                "schedule": "cosine", "loss": "L1 on maps divided by the input map's normalisation scale"}
    step = [float(v) for v in maps.attrs["step_nm"]]
    record = {
        "method": "self-supervised: target = measured map, input = its simulated scan at scale x the step "
                  "(same probe, scan mode, fast axis) with Poisson noise, at every sampling phase",
        "data": {"source": source, "dims": list(maps.dims), "shape": [int(n) for n in maps.shape],
                 "sha256": _content_sha256(values), "hashed_as": "values as little-endian float64, C order",
                 "elements": [str(e) for e in maps.element.values],
                 **({"angles": int(maps.sizes["angle"])} if "angle" in maps.dims else {})},
        "scan": {"probe": _probe_record(probe_used, probe_origin), "step_nm": step,
                 "pair_step_nm": [scale * v for v in step], "scan_mode": maps.attrs.get("scan_mode", "step"),
                 "fast_axis": maps.attrs.get("fast_axis", "x"), "phases": sorted({lab[-2:] for lab in pairs.labels}),
                 "training_maps": len(pairs.expected)},
        "settings": settings,
        "base_model": {"name": base_card.get("name"), "weights_sha256": base_card.get("weights_sha256"),
                       "metrics": base_card.get("metrics")},
        "device": str(dev),
        "torch_version": torch.__version__,
        "seconds": round(time.perf_counter() - started, 1),
        "loss": {"before": round(before, 6), "after": round(after, 6), "bicubic": round(bicubic, 6),
                 "per_epoch": history,
                 "pairs": f"{EVAL_PATCHES} fixed patches of one noise draw of the self-supervised pairs"},
    }
    # The base's test metrics describe the base, not this network: they move into the record.
    net.card = copy.deepcopy({k: v for k, v in base_card.items() if k not in ("metrics", "weights_sha256", "created")})
    net.card.update(name=name or f"{base_card.get('name') or 'rdn'}-adapted", adaptation=record)
    if out is not None:
        save_model(net, out, card={"name": net.card["name"]}, overwrite=overwrite)
    return net
