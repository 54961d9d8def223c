"""Training pairs made on the fly by the forward simulation, with domain randomisation.

Each pair is an LR scan patch simulated by :func:`~xrfsr_dask.simulate.simulate_scan`
from an HR element map, and the truth on the grid ``scale`` times finer: the
HR map averaged over each output pixel, in the same counts (expected counts
of an ideal point probe, times the same flux scale).

HR maps come from structure families, drawn with the weights of
:attr:`DataSettings.families`: synthetic NMC particles
(:func:`~xrfsr_dask.phantoms.nmc_particle`, ``"nmc"``) and the families of
:mod:`xrfsr_dask.families` (cells, fibres, porous media, polycrystals,
resolution targets, sparse particles, random textures). A map may be a
projection instead (``sample``): for NMC a projection of a particle volume,
for the other families the mean of several independent maps of the family,
as a thick sample seen along the beam. Each family's seed decides the
split: train, validation and test seeds never overlap, and the families of
:data:`~xrfsr_dask.families.HELD_OUT` are refused, so they stay a test of
generalisation.

Every scan draws its own forward model: probe FWHM, ellipticity and, for
part of the scans, tails and side lobes (:class:`~xrfsr_dask.probe.TailedProbe`);
scan step (and so the step-to-probe ratio); step or fly mode; position
jitter; row shifts of fly scans (velocity jitter) and row-to-row flux
changes; a constant background; the count level from a few counts per pixel
to thousands; dead pixels and lost lines. Users' own HR maps can be added
to the training pool.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import xarray as xr

from xrfsr_dask._grid import grid_nm
from xrfsr_dask.families import FAMILIES, HELD_OUT, structure_maps
from xrfsr_dask.phantoms import ELEMENTS, nmc_particle, nmc_volume
from xrfsr_dask.probe import GaussianProbe, TailedProbe
from xrfsr_dask.schema import xrf_maps
from xrfsr_dask.simulate import simulate_scan
from xrfsr_dask.tomo.projection import project

__all__ = ["DataSettings", "PairSource", "map_scale"]

SPLIT_OFFSETS = {"train": 0, "validation": 100_000, "test": 200_000}
"""Phantom seeds of each split start here, so splits never share a particle."""
PROJECTIONS_PER_VOLUME = 24
"""Projections (at random angles) kept of each NMC phantom volume."""
LAYERS = (2, 6)
"""Independent maps averaged into one projection-like map of a non-NMC family (inclusive range)."""
ALL_FAMILIES: tuple[str, ...] = ("nmc", *FAMILIES)
"""Every family name :class:`DataSettings` accepts (``"nmc"`` and :data:`~xrfsr_dask.families.FAMILIES`)."""
TRAINING_FAMILIES: tuple[tuple[str, float], ...] = tuple(
    (name, 1.0) for name in ALL_FAMILIES if name not in HELD_OUT
)
"""The default training mix: every family but the held-out ones, with equal weights."""


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
        Number of phantoms of each family in each split.
    validation_patches, test_patches
        Fixed patches evaluated after every epoch.
    sample
        ``"maps"``: HR maps are 2-D maps, as a thin section or a single XRF
        map shows them. ``"projections"``: HR maps are projections through
        a thick sample — for ``"nmc"`` tomographic projections of 3-D
        particles (:func:`~xrfsr_dask.phantoms.nmc_volume` of ``(ny, nx,
        nx)`` voxels, :data:`PROJECTIONS_PER_VOLUME` random angles each),
        at twice the HR pixel, repeated onto the HR grid; for the other
        families the mean of :data:`LAYERS` independent maps
        — which sum many features along the beam and look far smoother
        than a map. ``"mixed"``: half of the maps drawn are projections, so
        one model serves maps and tomography series.
    families
        ``((name, weight), ...)``: the structure families HR maps are drawn
        from (names in :data:`ALL_FAMILIES`) and their relative weights.
        Families in :data:`~xrfsr_dask.families.HELD_OUT` are refused.
    tails
        Fraction of scans whose probe has tails and side lobes
        (:class:`~xrfsr_dask.probe.TailedProbe`: halo power 0–15 % at 3–6
        FWHM, side-lobe power 0–15 % at 1.3–2 FWHM, each present in half
        of those scans).
    background
        ``(low, high)``: constant background added to every map, as a
        fraction of its 99th percentile, uniform (scatter and detector
        background; it is in the truth too, since the counts are measured).
    row_shift
        ``(low, high)``: standard deviation of per-row shifts along the
        fast axis of fly scans, in steps, uniform (velocity jitter).
    flux_jitter
        Standard deviation of a per-row relative flux change (beam
        intensity not normalised away).
    dead
        Fraction of scans with dead pixels (up to 0.2 % of them, zero
        counts) and, in half of those, one lost line (zeros). A network
        with the count-conserving layer keeps their deficit of counts
        (it cannot tell a dead pixel from an empty one); marked NaN and
        enhanced with ``nan="mask"`` they are filled from their neighbours.
    """

    scale: int = 2
    hr_pixel_nm: float = 5.0
    phantom_shape: tuple[int, int] = (512, 512)
    steps_nm: tuple[float, ...] = (20.0, 30.0, 40.0, 50.0, 60.0)
    probe_fwhm_nm: tuple[float, float] = (20.0, 80.0)
    ellipticity: tuple[float, float] = (0.8, 1.0)
    fly_fraction: float = 0.5
    jitter_fraction: tuple[float, float] = (0.0, 0.1)
    count_scale: tuple[float, float] = (0.005, 3.0)
    grain_nm: tuple[float, float] = (150.0, 450.0)
    patch: int = 32
    quantile: float = 0.999
    train_seeds: int = 24
    validation_seeds: int = 4
    test_seeds: int = 4
    validation_patches: int = 64
    test_patches: int = 64
    sample: str = "maps"
    families: tuple[tuple[str, float], ...] = TRAINING_FAMILIES
    tails: float = 0.5
    background: tuple[float, float] = (0.0, 0.05)
    row_shift: tuple[float, float] = (0.0, 0.1)
    flux_jitter: float = 0.02
    dead: float = 0.2

    def __post_init__(self) -> None:
        if self.sample not in ("maps", "projections", "mixed"):
            raise ValueError(f"sample must be 'maps', 'projections' or 'mixed'; got {self.sample!r}.")
        names = [name for name, _ in self.families]
        unknown = sorted(set(names) - set(ALL_FAMILIES))
        if unknown or not names:
            raise ValueError(f"families must name some of {list(ALL_FAMILIES)}; got {names!r}.")
        held = sorted(set(names) & set(HELD_OUT))
        if held:
            raise ValueError(
                f"families {held} are held out for the generalisation test (xrfsr_dask.families.HELD_OUT) "
                "and never trained on; remove them from families."
            )
        if any(not (math.isfinite(w) and w >= 0) for _, w in self.families) or not any(w > 0 for _, w in self.families):
            raise ValueError(f"family weights must be >= 0 and not all zero; got {self.families!r}.")
        for name in ("tails", "flux_jitter", "dead"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must be in [0, 1]; got {getattr(self, name)!r}.")
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
        def frozen(v: Any) -> Any:
            return tuple(frozen(x) for x in v) if isinstance(v, (list, tuple)) else v

        return cls(**{k: frozen(v) for k, v in values.items()})


def _binned(image: np.ndarray, factor: int) -> np.ndarray:
    ny, nx = (s // factor * factor for s in image.shape[-2:])
    view = image[..., :ny, :nx].reshape(*image.shape[:-2], ny // factor, factor, nx // factor, factor)
    return view.mean(axis=(-3, -1))


def _finer(image: xr.DataArray, factor: int) -> xr.DataArray:
    """``image`` on a grid ``factor`` times finer, each pixel repeated (same counts per pixel)."""
    values = np.repeat(np.repeat(np.asarray(image.values, dtype=np.float64), factor, -2), factor, -1)
    pixel = float(image.attrs["step_nm"][0]) / factor
    out = xrf_maps(values, elements=[str(e) for e in image.element.values], step_nm=pixel,
                   origin_nm=(float(image.y[0]) - pixel * (factor - 1) / 2,
                              float(image.x[0]) - pixel * (factor - 1) / 2),
                   units=image.attrs["units"], operation="xrfsr_dask.model.data._finer", parameters={"factor": factor})
    out.attrs["provenance"] = [*image.attrs["provenance"], *out.attrs["provenance"]]
    return out


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
        ``"train"``, ``"validation"`` or ``"test"``; picks the phantom seeds
        (the same seed numbers for every family).
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
        self._phantoms: dict[tuple[str, bool, int], xr.DataArray] = {}
        names = [name for name, weight in settings.families if weight > 0]
        weights = np.array([weight for _, weight in settings.families if weight > 0], dtype=np.float64)
        self._families = names
        self._weights = weights / weights.sum()

    def _phantom(self, family: str, projection: bool, seed: int) -> xr.DataArray:
        """The HR maps of one family and seed (all projection angles for NMC projections), cached."""
        key = (family, projection, seed)
        if key in self._phantoms:
            return self._phantoms[key]
        s = self.settings
        seeded = np.random.default_rng(seed)
        if family == "nmc":
            grain = float(seeded.uniform(*s.grain_nm))
            if projection:
                # Volumes at twice the HR pixel (an eighth of the voxels): a projection
                # is repeated onto the HR grid when drawn (see _pool).
                ny, nx = (n // 2 for n in s.phantom_shape)
                volume = nmc_volume((ny, nx, nx), voxel_nm=2 * s.hr_pixel_nm, seed=seed, elements=ELEMENTS,
                                    grain_nm=grain)
                angles = np.sort(seeded.uniform(0.0, 180.0, PROJECTIONS_PER_VOLUME))
                maps = project(volume, angles=angles).astype(np.float32)
            else:
                maps = nmc_particle(s.phantom_shape, pixel_nm=s.hr_pixel_nm, seed=seed, elements=ELEMENTS,
                                    grain_nm=grain)
        elif projection:
            layers = int(seeded.integers(LAYERS[0], LAYERS[1] + 1))
            stack = [structure_maps(family, s.phantom_shape, pixel_nm=s.hr_pixel_nm, seed=seed * 8 + k)
                     for k in range(layers)]
            maps = stack[0].copy(data=np.mean([m.values for m in stack], axis=0))
        else:
            maps = structure_maps(family, s.phantom_shape, pixel_nm=s.hr_pixel_nm, seed=seed)
        self._phantoms[key] = maps
        return maps

    def _pool(self, rng: np.random.Generator) -> xr.DataArray:
        s = self.settings
        if self._maps and rng.random() < len(self._maps) / (len(self._maps) + len(self.seeds)):
            return self._maps[int(rng.integers(len(self._maps)))]
        family = self._families[int(rng.choice(len(self._families), p=self._weights))]
        projection = s.sample == "projections" or (s.sample == "mixed" and rng.random() < 0.5)
        seed = self.seeds[int(rng.integers(len(self.seeds)))]
        maps = self._phantom(family, projection, seed)
        if "angle" in maps.dims:
            return _finer(maps.isel(angle=int(rng.integers(maps.sizes["angle"]))), 2)
        return maps

    def _probe(self, rng: np.random.Generator) -> tuple[GaussianProbe | TailedProbe, dict[str, Any]]:
        s = self.settings
        major = float(math.exp(rng.uniform(math.log(s.probe_fwhm_nm[0]), math.log(s.probe_fwhm_nm[1]))))
        core = GaussianProbe((major, major * float(rng.uniform(*s.ellipticity))),
                             angle_deg=float(rng.uniform(0.0, 180.0)))
        drawn: dict[str, Any] = {"probe": core.fwhm_pair_nm, "angle_deg": core.angle_deg}
        if rng.random() >= s.tails:
            return core, drawn
        tails = {
            "tail": float(rng.uniform(0.0, 0.15)) if rng.random() < 0.5 else 0.0,
            "tail_width": float(rng.uniform(3.0, 6.0)),
            "lobes": float(rng.uniform(0.0, 0.15)) if rng.random() < 0.5 else 0.0,
            "lobe_offset": float(rng.uniform(1.3, 2.0)),
        }
        return TailedProbe(core, **tails), {**drawn, "tails": tails}

    def scan(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
        """One simulated scan of a randomly drawn HR map with a randomly drawn forward model.

        Returns the LR maps ``(element, Y, X)``, the truth on the output
        grid ``(element, scale·Y, scale·X)`` (both float32 counts) and the
        drawn parameters.
        """
        s = self.settings
        hr = self._pool(rng)
        step = float(rng.choice(s.steps_nm))
        probe, drawn = self._probe(rng)
        values = np.asarray(hr.values, dtype=np.float64)
        level = np.quantile(values.reshape(values.shape[0], -1), 0.99, axis=-1)
        background = level * rng.uniform(*s.background, size=level.shape)
        hr = hr.copy(data=values + background[:, None, None])
        drawn.update({
            "step_nm": step,
            "scan_mode": "fly" if rng.random() < s.fly_fraction else "step",
            "jitter_nm": step * float(rng.uniform(*s.jitter_fraction)),
            "count_scale": float(math.exp(rng.uniform(*np.log(s.count_scale)))),
            "background": background.tolist(),
            "seed": int(rng.integers(2**31)),
        })
        expected = simulate_scan(
            hr, step_nm=step, probe=probe, scan_mode=drawn["scan_mode"], jitter_nm=drawn["jitter_nm"],
            scale=drawn["count_scale"], noise=False, seed=drawn["seed"],
        ).values.astype(np.float64)
        expected = self._rows(expected, rng, drawn)
        lr = rng.poisson(np.maximum(expected, 0.0)).astype(np.float64)
        lr = self._dead(lr, rng, drawn)
        factor = round(step / s.scale / s.hr_pixel_nm)
        truth = _binned(hr.values, factor) * drawn["count_scale"]
        ny, nx = (n * s.scale for n in lr.shape[-2:])
        return lr.astype(np.float32), truth[..., :ny, :nx].astype(np.float32), drawn

    def _rows(self, expected: np.ndarray, rng: np.random.Generator, drawn: dict[str, Any]) -> np.ndarray:
        """Fly-scan row shifts along the fast axis (velocity jitter) and per-row flux changes."""
        s = self.settings
        ny = expected.shape[-2]
        if drawn["scan_mode"] == "fly":
            shifts = np.asarray(rng.normal(0.0, float(rng.uniform(*s.row_shift)), ny))
            columns = np.arange(expected.shape[-1], dtype=np.float64)
            for row, shift in enumerate(shifts):
                expected[:, row] = np.stack([np.interp(columns + shift, columns, line) for line in expected[:, row]])
            drawn["row_shift_steps"] = float(np.std(shifts))
        flux = np.clip(1.0 + s.flux_jitter * rng.normal(size=ny), 0.5, 1.5)
        return expected * flux[:, None]

    def _dead(self, lr: np.ndarray, rng: np.random.Generator, drawn: dict[str, Any]) -> np.ndarray:
        """Dead pixels and a lost line: zero counts in the LR scan (the truth keeps them)."""
        s = self.settings
        if rng.random() >= s.dead:
            return lr
        dead = rng.random(lr.shape[-2:]) < rng.uniform(0.0, 0.002)
        if rng.random() < 0.5:
            dead[int(rng.integers(lr.shape[-2]))] = True
        drawn["dead_pixels"] = int(dead.sum())
        return np.where(dead, 0.0, lr)

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
