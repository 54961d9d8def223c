"""Element maps of any size, generated lazily block by block, with structure at every zoom level."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import dask.array as dsa
import numpy as np
import xarray as xr

from xrfsr_dask.schema import xrf_maps

__all__ = ["large_maps"]

SPOKES = 36
"""Spokes of the Siemens star that the Ni and Co maps share (visible when zoomed out)."""
CELL_PX = 64
"""Lattice cell of the Mo-rich particles, in pixels (visible when zoomed in)."""


def _hash01(iy: np.ndarray, ix: np.ndarray, seed: int) -> np.ndarray:
    """A repeatable value in [0, 1) per lattice cell (a 32-bit integer hash, no random state)."""
    h = (iy.astype(np.uint64) * np.uint64(73856093)) ^ (ix.astype(np.uint64) * np.uint64(19349663))
    h ^= np.uint64(seed) * np.uint64(83492791)
    h = (h ^ (h >> np.uint64(13))) * np.uint64(0x5BD1E995) & np.uint64(0xFFFFFFFF)
    return (h ^ (h >> np.uint64(15))).astype(np.float64) / 2.0**32


def _shape(kind: int, y: np.ndarray, x: np.ndarray, size: tuple[int, int], seed: int) -> np.ndarray:
    """Signal fraction of one element: 0 Ni star, 1 Co the star's complement, 2 Mn rings, 3 Mo particles."""
    cy, cx = (size[0] - 1) / 2, (size[1] - 1) / 2
    if kind == 3:
        iy, ix = y // CELL_PX, x // CELL_PX
        r_particle = CELL_PX * (0.1 + 0.3 * _hash01(iy, ix, seed))
        return np.where(np.hypot(y - (iy + 0.5) * CELL_PX, x - (ix + 0.5) * CELL_PX) <= r_particle, 1.0, 0.05)
    radius = np.hypot(y - cy, x - cx) / (min(size) / 2)
    if kind == 2:
        return np.where(radius <= 1.0, 0.5 + 0.5 * np.cos(2 * np.pi * 12 * radius), 0.1)
    star = np.cos(SPOKES * np.arctan2(y - cy, x - cx)) > 0
    return np.where((radius <= 1.0) & (star if kind == 0 else ~star), 1.0, 0.15)


def _block(size: tuple[int, int], counts: Sequence[float], seed: int, noise: bool, *,
           block_info: dict[Any, Any]) -> np.ndarray:
    (e0, e1), (y0, y1), (x0, x1) = block_info[None]["array-location"]
    y = np.arange(y0, y1)[:, None]
    x = np.arange(x0, x1)[None, :]
    expected = np.stack([counts[e] * _shape(e % 4, y, x, size, seed) for e in range(e0, e1)])
    if not noise:
        return expected.astype(np.float32)
    rng = np.random.default_rng([seed, e0, y0, x0])
    return rng.poisson(expected).astype(np.float32)


def large_maps(
    size: tuple[int, int],
    *,
    elements: Sequence[str] = ("Ni_K", "Co_K", "Mn_K", "Mo_L"),
    step_nm: float = 50.0,
    counts: Sequence[float] | None = None,
    chunk: int = 1024,
    noise: bool = True,
    seed: int = 0,
) -> xr.DataArray:
    """Element maps of ``size`` pixels, as a dask graph: nothing is generated until it is computed.

    Ni and Co fill the two halves of a Siemens star (36 spokes) across the
    whole map, Mn rings of the star's radius / 12, Mo particles on a 64-pixel
    lattice (radii 6 to 26 pixels). The noise of every block is seeded from
    its position, so the same ``size``, ``chunk`` and ``seed`` give the same
    counts however often, and in whatever order, the blocks are computed.

    Parameters
    ----------
    size
        ``(y, x)`` in pixels.
    elements
        Element names; the first four take the shapes above, further ones
        repeat them.
    step_nm
        Pixel size in nm.
    counts
        Expected counts in a pixel at full signal, per element (default
        ``200 / (1 + i / 2)`` for the ``i``-th: 200, 133.3, 100, 80, ...).
    chunk
        Dask block size in pixels (square), one element per block.
    noise
        Poisson counts (True) or the expected counts.
    seed
        Seeds the particle radii and the noise.

    Returns
    -------
    xarray.DataArray
        Maps of the data model, float32, dask-backed.
    """
    elements = list(elements)
    if counts is None:
        counts = [200.0 / (1 + 0.5 * i) for i in range(len(elements))]
    if len(counts) != len(elements):
        raise ValueError(f"counts has {len(counts)} values for {len(elements)} elements; give one per element.")
    shape = (len(elements), int(size[0]), int(size[1]))
    lazy = dsa.map_blocks(_block, (int(size[0]), int(size[1])), tuple(float(c) for c in counts), seed, noise,
                          chunks=dsa.core.normalize_chunks((1, chunk, chunk), shape), dtype=np.float32,
                          meta=np.empty((0, 0, 0), np.float32))
    return xrf_maps(lazy, elements=elements, step_nm=step_nm, scan_mode="step",
                    operation="xrfsr_dask.testing.large_maps",
                    parameters={"size": list(size), "step_nm": step_nm, "counts": list(counts), "seed": seed,
                                "noise": noise})
