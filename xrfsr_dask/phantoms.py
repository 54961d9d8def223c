"""Synthetic NMC cathode particles, as element maps and volumes.

Phantoms with known structure for testing resolution enhancement and
tomography, modelled on the LiNi0.6Mn0.2Co0.2O2 (NMC622) secondary particles
imaged by XRF at the HXN beamline in Wu et al. (2023): a roughly elliptical
particle with a slightly irregular outline, made of primary grains (a Voronoi
tessellation), with the Ni:Mn:Co = 6:2:2 composition varying a few percent
from grain to grain, a Mo dopant enriched at the grain boundaries and the
particle surface, pores and cracks. Every feature has sharp edges and the
grain boundaries are a few pixels wide, so the phantoms carry detail down to
the pixel scale.

:func:`nmc_particle` makes 2-D maps ``(element, y, x)`` and :func:`nmc_volume`
the 3-D analogue ``(element, z, y, x)``; their parallel-beam projections are
:func:`xrfsr_dask.tomo.project`. Both phantoms are
deterministic for a given ``seed``; with ``return_phases=True`` they also
return the label map of :class:`Phase` they were built from.

References
----------
Wu, L. et al. Resolution-enhanced X-ray fluorescence microscopy via deep
residual networks. npj Comput. Mater. 9, 43 (2023).
https://doi.org/10.1038/s41524-023-00995-9
"""

from __future__ import annotations

import enum
import math
import operator
from collections.abc import Sequence
from typing import Any, Literal, overload

import numpy as np
import xarray as xr
from scipy.spatial import cKDTree

from xrfsr_dask.schema import xrf_maps, xrf_volume

__all__ = ["ELEMENTS", "Phase", "nmc_particle", "nmc_volume"]

ELEMENTS: tuple[str, ...] = ("Ni_K", "Co_K", "Mn_K", "Mo_L")
"""The channels a phantom can hold, in their default order."""

MIN_SIDE = 8
# Nominal transition-metal atomic fractions of NMC622; each grain varies by
# _COMPOSITION_SPREAD (relative standard deviation).
_TM_FRACTION = {"Ni_K": 0.6, "Co_K": 0.2, "Mn_K": 0.2}
_COMPOSITION_SPREAD = 0.03
# Mo counts relative to Ni counts in grain interiors, its grain-to-grain
# spread, and its enrichment at grain boundaries and the particle surface.
_MO_FRACTION = 0.015
_MO_SPREAD = 0.1
_MO_ENRICHMENT = 5.0
# Transition-metal density in grain boundaries relative to the grain.
_BOUNDARY_DENSITY = 0.8
# Default particle radius as a fraction of the smallest side of the field.
_RADIUS_FRACTION = 0.4
# Outline: semi-axes ratios, and harmonics of order k with amplitude up to
# _OUTLINE_AMPLITUDE / k; the largest radius stays below 0.44 of the field.
_ASPECT = (0.85, 1.0)
_OUTLINE_ORDERS = np.arange(2, 8)
_OUTLINE_AMPLITUDE = 0.06
# Pore diameters: log-normal with median grain_nm * _PORE_MEDIAN.
_PORE_MEDIAN = 0.25
_PORE_SIGMA = 0.4


class Phase(enum.IntEnum):
    """Labels of the phase map a phantom returns with ``return_phases=True``."""

    OUTSIDE = 0
    INTERIOR = 1
    BOUNDARY = 2
    SURFACE = 3
    VOID = 4


def _check_shape(shape: Sequence[int], ndim: int) -> tuple[int, ...]:
    axes = ("y", "x") if ndim == 2 else ("z", "y", "x")
    try:
        sides = tuple(operator.index(n) for n in shape)
    except TypeError:
        sides = ()
    if len(sides) != ndim or min(sides) < MIN_SIDE:
        hint = {2: " For 2-D maps use nmc_particle.", 3: " For a volume use nmc_volume."}
        raise ValueError(
            f"shape must be {ndim} integers {axes} of at least {MIN_SIDE}; got {shape!r}."
            + (hint[len(sides)] if len(sides) != ndim and len(sides) in hint else "")
        )
    return sides


def _check_positive(value: Any, name: str, unit: str, *, allow_zero: bool = False) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if not math.isfinite(number) or number < 0 or (number == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be a finite number {bound} ({unit}); got {value!r}.")
    return number


def _check_elements(elements: Sequence[str]) -> list[str]:
    names = [elements] if isinstance(elements, str) else [str(e) for e in elements]
    unknown = [e for e in names if e not in ELEMENTS]
    if unknown or not names or len(set(names)) != len(names):
        problem = f"unknown names {unknown}" if unknown else "no names" if not names else "repeated names"
        raise ValueError(
            f"elements={list(names)!r} has {problem}; choose a subset, in any order, "
            f"of the supported channels {', '.join(ELEMENTS)}."
        )
    return names


def _check_knobs(
    seed: int, radius_nm: float | None, grain_nm: float, boundary_nm: float | None,
    porosity: float, cracks: int, counts: float, background: float, spacing: float,
) -> dict[str, Any]:
    try:
        seed = operator.index(seed)
    except TypeError:
        raise TypeError(f"seed must be an integer; got {seed!r}.") from None
    try:
        n_cracks = operator.index(cracks)
    except TypeError:
        n_cracks = -1
    if n_cracks < 0:
        raise ValueError(f"cracks must be a whole number >= 0; got {cracks!r}.")
    porosity = _check_positive(porosity, "porosity", "void fraction of the particle", allow_zero=True)
    if porosity >= 0.5:
        raise ValueError(f"porosity must be below 0.5 (a void fraction); got {porosity!r}.")
    return {
        "seed": seed,
        "radius_nm": None if radius_nm is None else _check_positive(radius_nm, "radius_nm", "nm"),
        "grain_nm": _check_positive(grain_nm, "grain_nm", "nm"),
        "boundary_nm": (
            2 * spacing if boundary_nm is None else _check_positive(boundary_nm, "boundary_nm", "nm")
        ),
        "porosity": porosity,
        "cracks": n_cracks,
        "counts": _check_positive(counts, "counts", "counts per pixel"),
        "background": _check_positive(background, "background", "counts per pixel", allow_zero=True),
    }


def _unit_vectors(rng: np.random.Generator, n: int, ndim: int) -> np.ndarray:
    vectors = rng.normal(size=(n, ndim))
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def _ball_volume(diameter: np.ndarray | float, ndim: int) -> Any:
    return math.pi ** (ndim / 2) / math.gamma(ndim / 2 + 1) * (np.asarray(diameter) / 2) ** ndim


def _outline(
    shape: tuple[int, ...], spacing: float, radius: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Flat indices, positions (ndim, n) in nm from the centre, and depth below the surface in nm."""
    ndim = len(shape)
    q, r = np.linalg.qr(rng.normal(size=(ndim, ndim)))
    rotation = q * np.sign(np.diag(r))
    semi_axes = radius * np.concatenate([[1.0], rng.uniform(*_ASPECT, ndim - 1)])
    directions = _unit_vectors(rng, _OUTLINE_ORDERS.size, ndim)
    amplitudes = _OUTLINE_AMPLITUDE * rng.uniform(-1, 1, _OUTLINE_ORDERS.size) / _OUTLINE_ORDERS
    axes = [(np.arange(n) - (n - 1) / 2) * spacing for n in shape]
    grids = np.meshgrid(*axes, indexing="ij", sparse=True)
    q2 = sum(
        (sum(rotation[k, i] * grids[k] for k in range(ndim)) / semi_axes[i]) ** 2 for i in range(ndim)
    )
    flat = np.flatnonzero(q2 < (1 + np.abs(amplitudes).sum()) ** 2)
    positions = np.stack([axes[k][i] for k, i in enumerate(np.unravel_index(flat, shape))])
    scaled = rotation.T @ positions / semi_axes[:, None]
    q = np.linalg.norm(scaled, axis=0)
    norm = np.linalg.norm(positions, axis=0)
    cosines = directions @ np.divide(positions, norm, out=np.zeros_like(positions), where=norm > 0)
    edge = 1 + amplitudes @ np.cos(_OUTLINE_ORDERS[:, None] * np.arccos(np.clip(cosines, -1, 1)))
    # Distance to the surface to first order: (edge - q) / |grad q|.
    gradient = np.linalg.norm(scaled / semi_axes[:, None], axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        depth = np.where(gradient > 0, (edge - q) * q / gradient, np.inf)
    inside = q < edge
    return flat[inside], positions[:, inside], depth[inside]


def _pores(
    shape: tuple[int, ...], spacing: float, flat: np.ndarray, target: float, grain_nm: float,
    rng: np.random.Generator,
) -> np.ndarray:
    """Mask over ``flat`` of spherical pores filling about ``target`` nm^ndim."""
    ndim = len(shape)
    void = np.zeros(shape, dtype=bool)
    mean = _ball_volume(grain_nm * _PORE_MEDIAN, ndim) * math.exp((ndim * _PORE_SIGMA) ** 2 / 2)
    diameters = rng.lognormal(math.log(grain_nm * _PORE_MEDIAN), _PORE_SIGMA, int(2 * target / mean) + 8)
    diameters = np.maximum(diameters, 2 * spacing)
    n = int(np.searchsorted(np.cumsum(_ball_volume(diameters, ndim)), target)) if target > 0 else 0
    picked = np.stack(np.unravel_index(rng.choice(flat, n), shape), axis=1)
    centres = picked + rng.uniform(-0.5, 0.5, picked.shape)
    for centre, r in zip(centres, diameters[:n] / (2 * spacing), strict=True):
        lo = np.maximum(np.floor(centre - r).astype(int), 0)
        hi = np.minimum(np.ceil(centre + r).astype(int) + 1, shape)
        box = tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
        local = np.ogrid[box]
        void[box] |= sum((g - c) ** 2 for g, c in zip(local, centre, strict=True)) < r * r
    return void.ravel()[flat]


def _cracks(
    positions: np.ndarray, n: int, radius: float, spacing: float, grain_nm: float, width_nm: float,
    rng: np.random.Generator,
) -> np.ndarray:
    """Mask over ``positions`` of thin radial cracks running from inside the particle to its surface."""
    ndim, count = positions.shape
    void = np.zeros(count, dtype=bool)
    r2 = (positions**2).sum(axis=0)
    for _ in range(n):
        u, v = _unit_vectors(rng, 2, ndim)
        normal = v - (v @ u) * u
        normal /= np.linalg.norm(normal)
        start = rng.uniform(0.15, 0.45) * radius
        half = width_nm * rng.uniform(0.75, 1.5) / 2
        period = rng.uniform(1.0, 2.0) * grain_nm
        phase = rng.uniform(0, 2 * math.pi)
        spread = math.tan(math.radians(rng.uniform(20.0, 45.0)))
        s = u @ positions
        offset = normal @ positions - 0.02 * radius * np.sin(2 * math.pi * s / period + phase)
        taper = np.sqrt(np.clip((s - start) / (radius - start), 0, 1))
        lateral2 = r2 - s**2 - (normal @ positions) ** 2
        void |= (
            (s > start)
            & (np.abs(offset) < np.maximum(half * taper, spacing / 2))
            & (lateral2 < (s * spread) ** 2)
        )
    return void


def _phantom(
    shape: tuple[int, ...], spacing: float, elements: list[str], knobs: dict[str, Any]
) -> tuple[np.ndarray, np.ndarray]:
    """Counts ``(element, *shape)`` float32 and phase labels ``shape`` int8."""
    rng = np.random.default_rng(knobs["seed"])
    ndim = len(shape)
    extent = np.array(shape) * spacing
    radius = knobs["radius_nm"] or _RADIUS_FRACTION * float(extent.min())
    grain_nm, width = knobs["grain_nm"], knobs["boundary_nm"]
    flat, positions, depth = _outline(shape, spacing, radius, rng)

    n_seeds = max(2, round(float(np.prod(extent)) / float(_ball_volume(grain_nm, ndim))))
    seeds = rng.uniform(-extent / 2, extent / 2, size=(n_seeds, ndim))
    fractions = np.array(list(_TM_FRACTION.values())) * (
        1 + _COMPOSITION_SPREAD * rng.normal(size=(n_seeds, 3))
    )
    fractions /= fractions.sum(axis=1, keepdims=True)
    tm = dict(zip(_TM_FRACTION, fractions.T, strict=True))
    mo = np.clip(1 + _MO_SPREAD * rng.normal(size=n_seeds), 0.5, None)
    distance, nearest = cKDTree(seeds).query(positions.T, k=2, workers=-1)
    separation = np.linalg.norm(seeds[nearest[:, 1]] - seeds[nearest[:, 0]], axis=1)
    # Distance to the plane bisecting the two nearest seeds.
    to_boundary = (distance[:, 1] ** 2 - distance[:, 0] ** 2) / (2 * separation)
    grain = nearest[:, 0]

    target = knobs["porosity"] * flat.size * spacing**ndim
    void = _pores(shape, spacing, flat, target, grain_nm, rng)
    void |= _cracks(positions, knobs["cracks"], radius, spacing, grain_nm, width, rng)

    labels = np.full(flat.size, Phase.INTERIOR, dtype=np.int8)
    labels[to_boundary < width / 2] = Phase.BOUNDARY
    labels[depth < width] = Phase.SURFACE
    labels[void] = Phase.VOID
    phases = np.zeros(shape, dtype=np.int8)
    phases.ravel()[flat] = labels

    values = np.full((len(elements), *shape), knobs["background"], dtype=np.float32)
    enriched = (labels == Phase.BOUNDARY) | (labels == Phase.SURFACE)
    for plane, element in zip(values, elements, strict=True):
        if element == "Mo_L":
            local = _MO_FRACTION * mo[grain] * np.where(enriched, _MO_ENRICHMENT, 1.0)
        else:
            local = tm[element][grain] / _TM_FRACTION["Ni_K"]
            local *= np.where(labels == Phase.BOUNDARY, _BOUNDARY_DENSITY, 1.0)
        local[labels == Phase.VOID] = 0.0
        plane.ravel()[flat] += (knobs["counts"] * local).astype(np.float32)
    return values, phases


def _phase_array(phases: np.ndarray, like: xr.DataArray) -> xr.DataArray:
    dims = like.dims[1:]
    return xr.DataArray(
        phases, dims=dims, coords={d: like.coords[d] for d in dims}, name="phase",
        attrs={
            "long_name": "phantom phase",
            "flag_values": [int(p) for p in Phase],
            "flag_meanings": " ".join(p.name.lower() for p in Phase),
        },
    )

@overload
def nmc_particle(
    shape: Sequence[int] = ..., *, pixel_nm: float = ..., seed: int = ...,
    elements: Sequence[str] = ..., radius_nm: float | None = ..., grain_nm: float = ...,
    boundary_nm: float | None = ..., porosity: float = ..., cracks: int = ..., counts: float = ...,
    background: float = ..., return_phases: Literal[False] = ...,
) -> xr.DataArray: ...
@overload
def nmc_particle(
    shape: Sequence[int] = ..., *, pixel_nm: float = ..., seed: int = ...,
    elements: Sequence[str] = ..., radius_nm: float | None = ..., grain_nm: float = ...,
    boundary_nm: float | None = ..., porosity: float = ..., cracks: int = ..., counts: float = ...,
    background: float = ..., return_phases: Literal[True],
) -> tuple[xr.DataArray, xr.DataArray]: ...
def nmc_particle(
    shape: Sequence[int] = (256, 256),
    *,
    pixel_nm: float = 10.0,
    seed: int = 0,
    elements: Sequence[str] = ELEMENTS,
    radius_nm: float | None = None,
    grain_nm: float = 300.0,
    boundary_nm: float | None = None,
    porosity: float = 0.02,
    cracks: int = 3,
    counts: float = 2000.0,
    background: float = 0.0,
    return_phases: bool = False,
) -> xr.DataArray | tuple[xr.DataArray, xr.DataArray]:
    """Element maps of a synthetic NMC622 secondary particle, in counts per pixel.

    A thin section through the particle: every pixel reads the composition at
    its centre (point sampling, so edges are sharp). For maps that integrate
    through a whole particle use ``project(nmc_volume(...))``.

    Parameters
    ----------
    shape
        ``(ny, nx)`` pixels, each at least 8.
    pixel_nm
        Pixel size in nm (the same along y and x).
    seed
        Seed of the random generator; the same arguments give the same maps.
    elements
        Channels to make, any subset and order of :data:`ELEMENTS`
        (``"Ni_K"``, ``"Co_K"``, ``"Mn_K"``, ``"Mo_L"``). A channel's values do
        not depend on which others are made.
    radius_nm
        Largest semi-axis of the particle in nm; by default 0.4 of the
        smaller side of the field, so the particle fills most of it.
    grain_nm
        Typical primary grain size in nm (diameter of the disc with the mean
        grain area).
    boundary_nm
        Width of the grain boundaries and of the Mo-enriched surface layer in
        nm; by default two pixels.
    porosity
        Area fraction of the particle taken by pores, in ``[0, 0.5)``.
    cracks
        Number of radial cracks.
    counts
        Ni counts per pixel in the dense bulk of a grain.
    background
        Counts added to every pixel of every element, inside and outside the
        particle.
    return_phases
        Also return the phase label of every pixel.

    Returns
    -------
    maps : xarray.DataArray
        Float32 counts ``(element, y, x)``, coordinates in nm from 0 at pixel
        ``[0, 0]``, ``probe_fwhm_nm`` None (an ideal point probe), provenance
        ``xrfsr_dask.phantoms.nmc_particle`` with these arguments.
    phases : xarray.DataArray
        Only with ``return_phases=True``: int8 labels ``(y, x)`` of
        :class:`Phase` (``flag_values`` and ``flag_meanings`` in its attrs).

    Notes
    -----
    The outline is an ellipse (axis ratio 0.85-1, random orientation) whose
    radius is modulated by harmonics of order 2-7. Grains are the Voronoi
    cells of seed points spread uniformly over the field; a pixel is on a
    grain boundary when its distance to the plane bisecting its two nearest
    seeds is below ``boundary_nm / 2``, and in the surface layer when it lies
    less than ``boundary_nm`` below the outline. Pores are discs with
    log-normal diameters (median ``grain_nm / 4``, at least two pixels)
    centred anywhere in the particle; cracks are thin, slightly wavy radial
    voids that open from 15-45 % of the radius out to the surface, widening
    to 0.75-1.5 ``boundary_nm`` there.

    Counts are those of a fitted, background-subtracted map: proportional to
    the local atomic fraction, with the same detection efficiency for every
    line. A grain holds Ni, Co, Mn in the ratio 6:2:2 (each fraction varies
    by 3 % between grains), so Co and Mn read about a third of Ni; boundaries
    hold 80 % of the transition-metal density of their grain. Mo reads 1.5 %
    of the Ni counts in grain interiors (10 % spread between grains) and five
    times that at grain boundaries and in the surface layer. Pores and cracks
    read zero (plus ``background``).

    References
    ----------
    Wu, L. et al. npj Comput. Mater. 9, 43 (2023),
    https://doi.org/10.1038/s41524-023-00995-9

    Examples
    --------
    >>> maps, phases = nmc_particle((128, 128), seed=1, return_phases=True)
    >>> maps.dims, maps.shape, str(maps.dtype)
    (('element', 'y', 'x'), (4, 128, 128), 'float32')
    >>> bulk = maps.where(phases == Phase.INTERIOR).sum(["y", "x"])
    >>> round(float(bulk.sel(element="Mn_K") / bulk.sel(element="Ni_K")), 1)
    0.3
    """
    sides = _check_shape(shape, 2)
    spacing = _check_positive(pixel_nm, "pixel_nm", "nm")
    names = _check_elements(elements)
    knobs = _check_knobs(
        seed, radius_nm, grain_nm, boundary_nm, porosity, cracks, counts, background, spacing
    )
    values, phases = _phantom(sides, spacing, names, knobs)
    parameters = {
        "shape": list(sides), "pixel_nm": spacing, "seed": knobs["seed"], "elements": names,
        "radius_nm": knobs["radius_nm"], "grain_nm": knobs["grain_nm"], "boundary_nm": knobs["boundary_nm"],
        "porosity": knobs["porosity"], "cracks": knobs["cracks"], "counts": knobs["counts"],
        "background": knobs["background"],
    }
    maps = xrf_maps(
        values, elements=names, step_nm=spacing, probe_fwhm_nm=None, scan_mode="step",
        operation="xrfsr_dask.phantoms.nmc_particle", parameters=parameters,
    )
    return (maps, _phase_array(phases, maps)) if return_phases else maps


@overload
def nmc_volume(
    shape: Sequence[int] = ..., *, voxel_nm: float = ..., seed: int = ...,
    elements: Sequence[str] = ..., radius_nm: float | None = ..., grain_nm: float = ...,
    boundary_nm: float | None = ..., porosity: float = ..., cracks: int = ..., counts: float = ...,
    background: float = ..., return_phases: Literal[False] = ...,
) -> xr.DataArray: ...
@overload
def nmc_volume(
    shape: Sequence[int] = ..., *, voxel_nm: float = ..., seed: int = ...,
    elements: Sequence[str] = ..., radius_nm: float | None = ..., grain_nm: float = ...,
    boundary_nm: float | None = ..., porosity: float = ..., cracks: int = ..., counts: float = ...,
    background: float = ..., return_phases: Literal[True],
) -> tuple[xr.DataArray, xr.DataArray]: ...
def nmc_volume(
    shape: Sequence[int] = (96, 96, 96),
    *,
    voxel_nm: float = 20.0,
    seed: int = 0,
    elements: Sequence[str] = ELEMENTS,
    radius_nm: float | None = None,
    grain_nm: float = 300.0,
    boundary_nm: float | None = None,
    porosity: float = 0.02,
    cracks: int = 3,
    counts: float = 25.0,
    background: float = 0.0,
    return_phases: bool = False,
) -> xr.DataArray | tuple[xr.DataArray, xr.DataArray]:
    """Element volumes of a synthetic NMC622 secondary particle, in counts per voxel.

    The 3-D analogue of :func:`nmc_particle`: an ellipsoidal particle of
    Voronoi grains with spherical pores and planar radial cracks.

    Parameters
    ----------
    shape
        ``(nz, ny, nx)`` voxels, each at least 8.
    voxel_nm
        Voxel size in nm (cubic voxels).
    seed
        Seed of the random generator; the same arguments give the same volume.
    elements
        Channels to make, any subset and order of :data:`ELEMENTS`.
    radius_nm
        Largest semi-axis of the particle in nm; by default 0.4 of the
        smallest side of the field, which keeps the particle inside the
        cylinder that :func:`project` sees at every angle.
    grain_nm
        Typical primary grain size in nm (diameter of the ball with the mean
        grain volume).
    boundary_nm
        Thickness of the grain boundaries and of the Mo-enriched surface
        layer in nm; by default two voxels.
    porosity
        Volume fraction of the particle taken by pores, in ``[0, 0.5)``.
    cracks
        Number of planar radial cracks.
    counts
        Ni counts per voxel in the dense bulk of a grain. The default, 25,
        gives about 2000 Ni counts where a projection of the default volume
        crosses the particle's centre, as in :func:`nmc_particle`.
    background
        Counts added to every voxel of every element.
    return_phases
        Also return the phase label of every voxel.

    Returns
    -------
    volume : xarray.DataArray
        Float32 counts ``(element, z, y, x)``, coordinates in nm from 0 at
        voxel ``[0, 0, 0]``, provenance ``xrfsr_dask.phantoms.nmc_volume``.
    phases : xarray.DataArray
        Only with ``return_phases=True``: int8 labels ``(z, y, x)`` of
        :class:`Phase`.

    Notes
    -----
    As :func:`nmc_particle`, in 3-D: the outline is an ellipsoid with random
    orientation and axis ratios 0.85-1, modulated by zonal harmonics of order
    2-7 about random directions; pores are balls; each crack is a thin, wavy
    slab through the centre, cut to a wedge (half-opening 20-45 degrees) that
    starts at 15-45 % of the radius and runs out to the surface. Counts
    follow the composition described for :func:`nmc_particle`, per voxel.

    Examples
    --------
    >>> volume = nmc_volume((48, 48, 48), seed=1, elements=["Ni_K", "Mo_L"])
    >>> volume.dims, volume.shape, volume.attrs["voxel_nm"]
    (('element', 'z', 'y', 'x'), (2, 48, 48, 48), [20.0, 20.0, 20.0])
    """
    sides = _check_shape(shape, 3)
    spacing = _check_positive(voxel_nm, "voxel_nm", "nm")
    names = _check_elements(elements)
    knobs = _check_knobs(
        seed, radius_nm, grain_nm, boundary_nm, porosity, cracks, counts, background, spacing
    )
    values, phases = _phantom(sides, spacing, names, knobs)
    parameters = {
        "shape": list(sides), "voxel_nm": spacing, "seed": knobs["seed"], "elements": names,
        "radius_nm": knobs["radius_nm"], "grain_nm": knobs["grain_nm"], "boundary_nm": knobs["boundary_nm"],
        "porosity": knobs["porosity"], "cracks": knobs["cracks"], "counts": knobs["counts"],
        "background": knobs["background"],
    }
    volume = xrf_volume(
        values, elements=names, voxel_nm=spacing,
        operation="xrfsr_dask.phantoms.nmc_volume", parameters=parameters,
    )
    return (volume, _phase_array(phases, volume)) if return_phases else volume


def __getattr__(name: str) -> Any:
    # ``project`` lived here before tomography geometry moved into xrfsr_dask.tomo.
    if name == "project":
        from xrfsr_dask.tomo.projection import project

        return project
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
