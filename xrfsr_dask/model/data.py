"""Training pairs made on the fly by the forward simulation, with domain randomisation.

Each pair is an LR scan patch simulated by :func:`~xrfsr_dask.simulate.simulate_scan`
from an HR element map, and the truth on the grid ``scale`` times finer: the
HR map averaged over each output pixel, in the same counts (expected counts
of an ideal point probe, times the same flux scale). Probe FWHM, scan step,
step or fly mode, position jitter and count level are drawn for every
simulated scan, so one model serves Fresnel-zone-plate-like (about 60 nm
probe) and multilayer-Laue-lens-like (about 25 nm) data.

HR maps are synthetic NMC particles (:func:`~xrfsr_dask.phantoms.nmc_particle`)
whose seed decides the split: train, validation and test seeds never
overlap. Users' own HR maps can be added to the training pool.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import xarray as xr

from xrfsr_dask._grid import grid_nm
from xrfsr_dask.phantoms import ELEMENTS, nmc_particle, nmc_volume, project
from xrfsr_dask.probe import GaussianProbe
from xrfsr_dask.simulate import simulate_scan

__all__ = ["DataSettings", "PairSource", "map_scale"]

SPLIT_OFFSETS = {"train": 0, "validation": 100_000, "test": 200_000}
"""Phantom seeds of each split start here, so splits never share a particle."""
PROJECTIONS_PER_VOLUME = 24
"""Projections (at random angles) kept of each phantom volume when ``sample="projections"``."""


def map_scale(lr: np.ndarray, quantile: float) -> np.ndarray:
    """Per-map normalisation scale: the ``quantile`` of each ``(..., y, x)`` map's finite values.

    Maps whose quantile is not positive (empty maps) get 1, so they pass
    through unscaled.
    """
    flat = lr.reshape(*lr.shape[:-2], -1)
    flat = np.where(np.isfinite(flat), flat, np.nan)
    with np.errstate(all="ignore"):
        scale = np.nanquantile(flat, quantile, axis=-1) if flat.shape[-1] else np.ones(flat.shape[:-1])
    scale = np.asarray(scale, dtype=np.float64)
    return np.where(np.isfinite(scale) & (scale > 0), scale, 1.0)


@dataclasses.dataclass(frozen=True)
class DataSettings:
    """What the simulated training data are drawn from; stored in the model card.

    Attributes
    ----------
    scale
        Output grid refinement of the model (the target pixel is ``step / scale``).
    hr_pixel_nm
        Pixel of the HR phantoms in nm; every step / scale must be a multiple.
    phantom_shape
        ``(ny, nx)`` HR pixels of each phantom.
    steps_nm
        Scan steps drawn from, uniformly.
    probe_fwhm_nm
        ``(low, high)``: probe FWHM drawn log-uniformly, nm.
    ellipticity
        ``(low, high)``: minor/major FWHM ratio drawn uniformly.
    fly_fraction
        Fraction of scans simulated as fly scans (the rest step scans).
    jitter_fraction
        ``(low, high)``: position jitter as a fraction of the step, uniform.
    count_scale
        ``(low, high)``: flux scale drawn log-uniformly; the phantoms read
        2000 Ni counts per pixel in dense grains at scale 1.
    grain_nm
        ``(low, high)``: phantom grain size, uniform.
    patch
        LR pixels per side of a training patch.
    quantile
        Per-map normalisation quantile (see :func:`map_scale`).
    train_seeds, validation_seeds, test_seeds
        Number of phantoms in each split.
    validation_patches, test_patches
        Fixed patches evaluated after every epoch.
    sample
        ``"maps"``: HR maps are 2-D particles (:func:`~xrfsr_dask.phantoms.nmc_particle`),
        as a thin section or a single XRF map shows them. ``"projections"``:
        HR maps are tomographic projections of 3-D particles
        (:func:`~xrfsr_dask.phantoms.nmc_volume` of ``(ny, nx, nx)`` voxels,
        :data:`PROJECTIONS_PER_VOLUME` random angles each), which sum many
        grains along the beam and so look far smoother than a map: a model
        for tomography series should be trained on these.
    """

    scale: int = 2
    hr_pixel_nm: float = 5.0
    phantom_shape: tuple[int, int] = (512, 512)
    steps_nm: tuple[float, ...] = (20.0, 30.0, 40.0, 50.0, 60.0)
    probe_fwhm_nm: tuple[float, float] = (20.0, 80.0)
    ellipticity: tuple[float, float] = (0.8, 1.0)
    fly_fraction: float = 0.5
    jitter_fraction: tuple[float, float] = (0.0, 0.1)
    count_scale: tuple[float, float] = (0.02, 2.0)
    grain_nm: tuple[float, float] = (150.0, 450.0)
    patch: int = 32
    quantile: float = 0.999
    train_seeds: int = 24
    validation_seeds: int = 4
    test_seeds: int = 4
    validation_patches: int = 64
    test_patches: int = 64
    sample: str = "maps"

    def __post_init__(self) -> None:
        if self.sample not in ("maps", "projections"):
            raise ValueError(f"sample must be 'maps' or 'projections'; got {self.sample!r}.")
        for step in self.steps_nm:
            ratio = step / self.scale / self.hr_pixel_nm
            if abs(ratio - round(ratio)) > 1e-6 or round(ratio) < 1:
                raise ValueError(
                    f"steps_nm contains {step} nm, but step / scale = {step / self.scale} nm is not a "
                    f"multiple of hr_pixel_nm = {self.hr_pixel_nm} nm; choose steps that are multiples "
                    f"of {self.scale * self.hr_pixel_nm} nm."
                )
        if self.patch < 4:
            raise ValueError(f"patch must be at least 4 LR pixels; got {self.patch}.")
        fits = int(min(self.phantom_shape) * self.hr_pixel_nm // max(self.steps_nm))
        if self.patch > fits:
            raise ValueError(
                f"patch={self.patch} LR pixels does not fit a scan of the phantoms: "
                f"{min(self.phantom_shape)} px x {self.hr_pixel_nm} nm at a {max(self.steps_nm)} nm step is "
                f"{fits} LR pixels; use a smaller patch or larger phantom_shape."
            )
        if not 0 < self.quantile <= 1:
            raise ValueError(f"quantile must be in (0, 1]; got {self.quantile}.")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> DataSettings:
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


def _binned(image: np.ndarray, factor: int) -> np.ndarray:
    ny, nx = (s // factor * factor for s in image.shape[-2:])
    view = image[..., :ny, :nx].reshape(*image.shape[:-2], ny // factor, factor, nx // factor, factor)
    return view.mean(axis=(-3, -1))


def _check_user_image(image: xr.DataArray, settings: DataSettings) -> xr.DataArray:
    if not isinstance(image, xr.DataArray) or image.dims[-2:] != ("y", "x") or image.ndim not in (2, 3):
        raise ValueError(
            "user HR images must be DataArrays (y, x) or (element, y, x) with nm coordinates, e.g. "
            "from xrfsr_dask.open_xrf(...).counts.isel(angle=0)."
        )
    for dim in ("y", "x"):
        _, step = grid_nm(image, dim, None, name="image", purpose="training")
        if abs(step - settings.hr_pixel_nm) > 1e-6 * step:
            raise ValueError(
                f"a user HR image has a {step} nm pixel along {dim}, but the training data use "
                f"hr_pixel_nm={settings.hr_pixel_nm}; resample it or set hr_pixel_nm to match."
            )
    return image if image.ndim == 3 else image.expand_dims(element=["user"])


class PairSource:
    """Draws simulated (LR, truth) pairs from one split's HR maps.

    Parameters
    ----------
    settings
        The data settings.
    split
        ``"train"``, ``"validation"`` or ``"test"``; picks the phantom seeds.
    images
        Extra HR maps (train split only), DataArrays ``(element, y, x)`` or
        ``(y, x)`` whose pixel is ``settings.hr_pixel_nm``.
    """

    def __init__(
        self, settings: DataSettings, split: str, *, images: Sequence[xr.DataArray] = ()
    ) -> None:
        if split not in SPLIT_OFFSETS:
            raise ValueError(f"split must be one of {sorted(SPLIT_OFFSETS)}; got {split!r}.")
        self.settings = settings
        count = getattr(settings, f"{split}_seeds")
        self.seeds = [SPLIT_OFFSETS[split] + i for i in range(count)]
        self._maps: list[xr.DataArray] = [_check_user_image(im, settings) for im in images]
        self._phantoms: dict[int, xr.DataArray] = {}

    def _pool(self, rng: np.random.Generator) -> xr.DataArray:
        index = int(rng.integers(len(self.seeds) + len(self._maps)))
        if index >= len(self.seeds):
            return self._maps[index - len(self.seeds)]
        seed = self.seeds[index]
        s = self.settings
        if seed not in self._phantoms:
            seeded = np.random.default_rng(seed)
            grain = float(seeded.uniform(*s.grain_nm))
            if s.sample == "projections":
                ny, nx = s.phantom_shape
                volume = nmc_volume((ny, nx, nx), voxel_nm=s.hr_pixel_nm, seed=seed, elements=ELEMENTS,
                                    grain_nm=grain)
                angles = np.sort(seeded.uniform(0.0, 180.0, PROJECTIONS_PER_VOLUME))
                self._phantoms[seed] = project(volume, angles=angles)
            else:
                self._phantoms[seed] = nmc_particle(
                    s.phantom_shape, pixel_nm=s.hr_pixel_nm, seed=seed, elements=ELEMENTS, grain_nm=grain,
                )
        if s.sample == "projections":
            return self._phantoms[seed].isel(angle=int(rng.integers(PROJECTIONS_PER_VOLUME)))
        return self._phantoms[seed]

    def scan(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
        """One simulated scan of a randomly drawn HR map with randomly drawn settings.

        Returns the LR maps ``(element, Y, X)``, the truth on the output
        grid ``(element, scale·Y, scale·X)`` (both float32 counts) and the
        drawn parameters.
        """
        s = self.settings
        hr = self._pool(rng)
        step = float(rng.choice(s.steps_nm))
        major = float(math.exp(rng.uniform(math.log(s.probe_fwhm_nm[0]), math.log(s.probe_fwhm_nm[1]))))
        drawn = {
            "step_nm": step,
            "probe": (major, major * float(rng.uniform(*s.ellipticity))),
            "angle_deg": float(rng.uniform(0.0, 180.0)),
            "scan_mode": "fly" if rng.random() < s.fly_fraction else "step",
            "jitter_nm": step * float(rng.uniform(*s.jitter_fraction)),
            "count_scale": float(math.exp(rng.uniform(*np.log(s.count_scale)))),
            "seed": int(rng.integers(2**31)),
        }
        lr = simulate_scan(
            hr, step_nm=step, probe=GaussianProbe(drawn["probe"], angle_deg=drawn["angle_deg"]),
            scan_mode=drawn["scan_mode"], jitter_nm=drawn["jitter_nm"], scale=drawn["count_scale"],
            noise=True, seed=drawn["seed"],
        ).values
        factor = round(step / s.scale / s.hr_pixel_nm)
        truth = _binned(np.asarray(hr.values, dtype=np.float64), factor) * drawn["count_scale"]
        ny, nx = (n * s.scale for n in lr.shape[-2:])
        return lr.astype(np.float32), truth[..., :ny, :nx].astype(np.float32), drawn

    def batch(self, rng: np.random.Generator, size: int, *, crops_per_map: int = 4) -> tuple[np.ndarray, np.ndarray]:
        """``size`` normalised pairs: LR ``(size, 1, P, P)`` and truth ``(size, 1, sP, sP)``.

        Each simulated scan gives ``crops_per_map`` random patches of each of
        its element maps; both images of a pair are divided by the LR map's
        normalisation scale.
        """
        s = self.settings
        lr_out = np.empty((size, 1, s.patch, s.patch), np.float32)
        hr_out = np.empty((size, 1, s.patch * s.scale, s.patch * s.scale), np.float32)
        filled = 0
        while filled < size:
            lr, truth, _ = self.scan(rng)
            norm = map_scale(lr, s.quantile)
            for element in rng.permutation(lr.shape[0]):
                for _ in range(crops_per_map):
                    if filled == size:
                        break
                    i = int(rng.integers(lr.shape[-2] - s.patch + 1))
                    j = int(rng.integers(lr.shape[-1] - s.patch + 1))
                    lr_out[filled, 0] = lr[element, i:i + s.patch, j:j + s.patch] / norm[element]
                    hr_out[filled, 0] = truth[
                        element, i * s.scale:(i + s.patch) * s.scale, j * s.scale:(j + s.patch) * s.scale
                    ] / norm[element]
                    filled += 1
        flips = rng.integers(2, size=(size, 3)).astype(bool)
        for k, (flip_y, flip_x, transpose) in enumerate(flips):
            lr_out[k, 0], hr_out[k, 0] = (_augment(a, flip_y, flip_x, transpose) for a in (lr_out[k, 0], hr_out[k, 0]))
        return lr_out, hr_out

    def fixed(self, count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """The same ``count`` pairs on every call (validation and test sets)."""
        return self.batch(np.random.default_rng(seed), count)


def _augment(image: np.ndarray, flip_y: bool, flip_x: bool, transpose: bool) -> np.ndarray:
    image = image[::-1] if flip_y else image
    image = image[:, ::-1] if flip_x else image
    return image.T if transpose else image
