"""Structure-diverse phantoms: seeded multi-element maps of eight kinds of structure.

The NMC particles of :mod:`xrfsr_dask.phantoms` are one kind of structure; a
network trained on them alone does worse than bicubic interpolation on others.
:func:`structure_maps` makes high-resolution element maps ``(element, y, x)``
of cells, fibres, porous media, polycrystals, resolution targets,
nanoparticles, smooth textures and integrated circuits (:data:`FAMILIES`), for
training and for evaluation. ``circuit`` is in :data:`HELD_OUT`: never train
or select models on it, so it measures generalisation to an unseen structure.

Every structure is drawn in nanometres, in the frame of the field of view
``[0, ny * pixel_nm] x [0, nx * pixel_nm]``, and only then sampled: the pixel
size changes the sampling, not the structure. A pixel holds the expected
counts of an ideal point probe averaged over the pixel's area (partial
volume): an edge is a linear ramp one pixel wide (the pixel box along its
normal), features thinner than a pixel keep their mass at a lower level,
objects under two pixels are averaged over 3 x 3 samples per pixel, and
"diffuse" boundaries are further convolved with a Gaussian of a stated width
in nm.

Each family builds a few components (membranes, pores, wires, ...), each near
1 in its dense regions, and every element is a per-seed mix of them: a main
role, some leakage of other components, and in half the maps a weak smooth
background. Some element pairs are therefore correlated (a fill and what it
fills, a core and its shell) and some anti-correlated (a matrix and its pore
fill, the two sides of a knife edge, the solute and solvent of a grain). The
levels differ: one element with a dense role is the brightest, at ``counts``
in its dense regions; the others are drawn log-uniformly from 1 % to 100 % of
that.
"""

from __future__ import annotations

import math
import operator
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import xarray as xr
from scipy import ndimage
from scipy.spatial import cKDTree
from scipy.special import ndtr

from xrfsr_dask.schema import xrf_maps

__all__ = ["FAMILIES", "HELD_OUT", "structure_maps"]

FAMILIES: dict[str, str] = {
    "cell": "biological cells: thin membranes, nuclei, organelles, dense granules, diffuse cytoplasm",
    "fibres": "curved fibres 10-200 nm wide and a crossing filament network, coated, junctions decorated",
    "porous": "matrix with pores of 10 nm to 1.5 um and thin fractures, some filled or lined by a second element",
    "polycrystal": "Voronoi grains with sharp and diffuse boundaries, per-grain composition, boundary segregation",
    "targets": "resolution targets: line pairs of 30-400 nm period both ways, Siemens star segments, knife edges",
    "particles": "sparse nanoparticles of 10-100 nm (single, alloyed, core-shell), some clustered, weak support",
    "texture": "smooth Gaussian random fields, correlation lengths 20 nm to 1 um, correlated and anti-correlated",
    "circuit": "integrated-circuit layout: Manhattan wires of several widths on two layers, vias, pads, gates",
}
"""Family name -> one-line description of what its maps hold."""

HELD_OUT: tuple[str, ...] = ("circuit",)
"""Families never used for training or model selection (generalisation tests only)."""

MIN_SIDE, MAX_SIDE = 8, 4096
MAX_PIXEL_NM = 100.0
# Objects whose box is at most this many pixels either side of their centre are
# rendered together in one vectorised pass; larger ones one by one, clipped.
_BUCKETS = np.array([1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48])
_CHUNK = 2_000_000  # values evaluated per vectorised pass
_SUPERSAMPLE = 3  # objects under two pixels are sampled 3 x 3 times in each pixel


@dataclass(frozen=True)
class _Grid:
    """Pixel grid: pixel ``i`` covers ``[i p, (i + 1) p]`` nm, its centre at ``(i + 1/2) p``."""

    ny: int
    nx: int
    p: float

    @property
    def height(self) -> float:
        return self.ny * self.p

    @property
    def width(self) -> float:
        return self.nx * self.p

    @property
    def area(self) -> float:
        return self.height * self.width

    def axes(self) -> tuple[np.ndarray, np.ndarray]:
        return (np.arange(self.ny) + 0.5)[:, None] * self.p, (np.arange(self.nx) + 0.5)[None, :] * self.p

    def box(self, cy: float, cx: float, reach: float) -> tuple[slice, slice]:
        """Rows and columns of the pixels within ``reach`` nm of ``(cy, cx)``, clipped to the grid."""
        def side(c: float, n: int) -> slice:
            lo, hi = math.floor((c - reach) / self.p), math.ceil((c + reach) / self.p) + 1
            return slice(min(max(0, lo), n), max(0, min(n, hi)))

        return side(cy, self.ny), side(cx, self.nx)

    def scatter(self, rng: np.random.Generator, n: int, margin: float) -> np.ndarray:
        """``n`` points ``(y, x)`` uniform over the field widened by ``margin`` nm on every side."""
        return np.column_stack([rng.uniform(-margin, self.height + margin, n),
                                rng.uniform(-margin, self.width + margin, n)])


def _rng(key: tuple[int, int], *stream: int) -> np.random.Generator:
    return np.random.default_rng([*key, *(int(s) + 2**20 for s in stream)])


def _logu(rng: np.random.Generator, lo: float, hi: float, size: Any = None) -> Any:
    return np.exp(rng.uniform(math.log(lo), math.log(hi), size))


def _step(d: Any, p: float, blur: Any = 0.0) -> Any:
    """Fraction of a pixel ``p`` nm wide at signed distance ``d`` nm inside an edge.

    The edge (a half-plane, ``d > 0`` inside) convolved with the pixel box
    along its normal and with a Gaussian of standard deviation ``blur`` nm:
    ``(G(d + p/2) - G(d - p/2)) / p`` with ``G`` the integral of the normal
    CDF. Summed over pixels it keeps the mass of any shape built from it.
    """
    if np.ndim(blur) == 0 and float(blur) == 0.0:
        return np.clip(d / p + 0.5, 0.0, 1.0)
    s = np.maximum(blur, 1e-3 * p)

    def integral(x: Any) -> Any:
        z = x / s
        return x * ndtr(z) + s * np.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)

    return (integral(d + p / 2) - integral(d - p / 2)) / p


def _band(d: Any, half: Any, p: float, blur: Any = 0.0) -> Any:
    """Fraction of a pixel inside the band ``|d| < half`` (its mass is kept exactly)."""
    return _step(d + half, p, blur) - _step(d - half, p, blur)


def _chord(d: Any, half: Any, p: float) -> Any:
    """Projected thickness (nm) of a cylinder of radius ``half`` at distance ``d``, averaged over a pixel."""
    h = np.asarray(half, dtype=np.float64)

    def integral(x: Any) -> Any:  # of sqrt(h**2 - x**2)
        x = np.clip(x, -h, h)
        return 0.5 * (x * np.sqrt(np.maximum(h * h - x * x, 0.0)) + h * h * np.arcsin(x / h))

    return (integral(d + p / 2) - integral(d - p / 2)) / p


def _grf(grid: _Grid, key: int, corr_nm: float) -> np.ndarray:
    """Zero-mean, unit-variance Gaussian random field, periodic over the field of view.

    Fourier synthesis with covariance ``exp(-r**2 / (2 corr_nm**2))``, averaged
    over each pixel (sinc). The coefficient of each spatial frequency comes from
    a generator seeded by ``key`` and the frequency's 32 x 32 block, so the
    same continuous field is sampled whatever the pixel size. A correlation
    length beyond the field of view is taken as its larger side.
    """
    block = 32
    corr_nm = min(corr_nm, max(grid.height, grid.width))
    ny, nx, p = grid.ny, grid.nx, grid.p
    ky = np.rint(np.fft.fftfreq(ny) * ny).astype(np.int64)
    kx = np.rint(np.fft.fftfreq(nx) * nx).astype(np.int64)
    rows = np.flatnonzero(np.abs(ky) <= math.ceil(1.1 * grid.height / corr_nm))
    cols = np.flatnonzero(np.abs(kx) <= math.ceil(1.1 * grid.width / corr_nm))
    coef = np.zeros((rows.size, cols.size), dtype=np.complex128)
    by, bx = ky[rows] // block, kx[cols] // block
    for b_y in np.unique(by):
        r = np.flatnonzero(by == b_y)
        for b_x in np.unique(bx):
            c = np.flatnonzero(bx == b_x)
            draw = np.random.default_rng([key, int(b_y) + 2**20, int(b_x) + 2**20]).standard_normal(
                (2, block, block)
            )
            sub = np.ix_(ky[rows[r]] - b_y * block, kx[cols[c]] - b_x * block)
            coef[np.ix_(r, c)] = draw[0][sub] + 1j * draw[1][sub]
    fy = (ky[rows] / grid.height)[:, None]
    fx = (kx[cols] / grid.width)[None, :]
    transfer = (
        np.exp(-(math.pi * corr_nm) ** 2 * (fy**2 + fx**2))
        * np.sinc(fy * p) * np.sinc(fx * p)
        * np.exp(1j * math.pi * p * (fy + fx))  # pixel centres at (i + 1/2) p
    )
    spectrum = np.zeros((ny, nx), dtype=np.complex128)
    spectrum[np.ix_(rows, cols)] = coef * transfer
    field = np.fft.ifft2(spectrum).real
    field -= field.mean()
    std = field.std()
    return field / std if std > 0 else field


def _keys(rng: np.random.Generator, n: int) -> list[int]:
    return [int(k) for k in rng.integers(0, 2**62, n)]


# --- rendering of many small objects -----------------------------------------------------


def _splat(
    grid: _Grid, cy: np.ndarray, cx: np.ndarray, reach: np.ndarray,
    render: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray], *, combine: str = "sum",
    supersample: int = 1,
) -> np.ndarray:
    """Sum (or max) of objects centred at ``(cy, cx)`` nm, each drawn within ``reach`` nm.

    ``render(dy, dx, sel)`` gets the offsets (nm) of sample points from the
    centres of objects ``sel``, shaped ``(n, K, 1)`` and ``(n, 1, K)``: the
    pixel centres, or with ``supersample=s`` an ``s x s`` grid in each pixel,
    whose values are averaged.
    """
    ny, nx, p, ss = grid.ny, grid.nx, grid.p, supersample
    out = np.zeros(ny * nx)
    cy, cx, reach = (np.asarray(a, dtype=np.float64) for a in (cy, cx, reach))
    inside = (cy > -reach) & (cy < grid.height + reach) & (cx > -reach) & (cx < grid.width + reach)
    members = np.flatnonzero(inside)
    half = np.ceil(reach[members] / p).astype(np.int64)
    size = np.searchsorted(_BUCKETS, half)
    sub = (np.arange(ss) + 0.5) / ss

    def deposit(iy: np.ndarray, ix: np.ndarray, sel: np.ndarray) -> None:
        n, ky, kx = sel.size, iy.shape[1], ix.shape[1]
        dy = ((iy[:, :, None] + sub) * p - cy[sel][:, None, None]).reshape(n, ky * ss, 1)
        dx = ((ix[:, :, None] + sub) * p - cx[sel][:, None, None]).reshape(n, 1, kx * ss)
        values = np.broadcast_to(render(dy, dx, sel), (n, ky * ss, kx * ss))
        if ss > 1:
            values = values.reshape(n, ky, ss, kx, ss).mean(axis=(2, 4))
        valid = ((iy >= 0) & (iy < ny))[:, :, None] & ((ix >= 0) & (ix < nx))[:, None, :]
        flat = np.broadcast_to(iy[:, :, None] * nx + ix[:, None, :], valid.shape)[valid]
        values = values[valid]
        if combine == "sum":
            out[:] += np.bincount(flat, values, minlength=out.size)
        else:
            np.maximum.at(out, flat, values)

    for bucket in np.unique(size):
        group = members[size == bucket]
        if bucket < _BUCKETS.size:
            h = int(_BUCKETS[bucket])
            offsets = np.arange(-h, h + 1)
            step = max(1, _CHUNK // ((2 * h + 1) * ss) ** 2)
            for start in range(0, group.size, step):
                sel = group[start:start + step]
                iy = np.floor(cy[sel] / p).astype(np.int64)[:, None] + offsets
                ix = np.floor(cx[sel] / p).astype(np.int64)[:, None] + offsets
                deposit(iy, ix, sel)
        else:  # large objects one by one, in their box clipped to the grid
            image = out.reshape(ny, nx)
            for i in group:
                sy, sx = grid.box(cy[i], cx[i], reach[i])
                if sy.start >= sy.stop or sx.start >= sx.stop:
                    continue
                dy = ((np.arange(sy.start, sy.stop)[:, None] + sub) * p - cy[i]).reshape(1, -1, 1)
                dx = ((np.arange(sx.start, sx.stop)[:, None] + sub) * p - cx[i]).reshape(1, 1, -1)
                values = np.broadcast_to(render(dy, dx, np.array([i])), (1, dy.shape[1], dx.shape[2]))[0]
                if ss > 1:
                    values = values.reshape(sy.stop - sy.start, ss, sx.stop - sx.start, ss).mean(axis=(1, 3))
                if combine == "sum":
                    image[sy, sx] += values
                else:
                    np.maximum(image[sy, sx], values, out=image[sy, sx])
    return out.reshape(ny, nx)


def _ellipse_depth(
    dy: Any, dx: Any, a: Any, b: Any, angle: Any, harmonics: Sequence[tuple[int, float, float]] = (),
) -> Any:
    """Distance (nm) inside the outline of an ellipse, negative outside, to first order.

    ``harmonics`` ``(order, amplitude, phase)`` modulate the outline radius.
    """
    cos, sin = np.cos(angle), np.sin(angle)
    su = (dx * cos + dy * sin) / a
    sv = (dy * cos - dx * sin) / b
    q = np.sqrt(su * su + sv * sv)
    gradient = np.sqrt((su / a) ** 2 + (sv / b) ** 2)  # q |grad q|
    edge: Any = 1.0
    if harmonics:
        theta = np.arctan2(sv, su)
        edge = 1.0 + sum(amp * np.cos(k * theta + phase) for k, amp, phase in harmonics)
    with np.errstate(divide="ignore", invalid="ignore"):
        depth = (edge - q) * q / gradient
    centre = gradient == 0
    if centre.any():  # the centre itself: q / |grad q| -> the semi-axis, take the smaller
        depth[centre] = np.broadcast_to(edge * np.minimum(a, b), depth.shape)[centre]
    return depth


def _ellipses(
    grid: _Grid, cy: Any, cx: Any, a: Any, b: Any, angle: Any, *, profile: str = "flat", rim: Any = 0.0,
) -> np.ndarray:
    """Ellipses with semi-axes ``a``, ``b`` nm: ``flat`` discs, ``dome`` s, ``facet`` s or a ``rim``.

    A flat disc has the edge of :func:`_step`; its axes shrink (or, below a
    pixel, its level drops) so that it keeps its area. A dome is a sphere's
    projected thickness (1 at its centre), a facet the flatter projection of a
    faceted particle (a dome times 1.5, capped at 1); both widen by the pixel
    box and drop to keep their volume. A rim is a lining of thickness ``rim``
    nm just inside the outline. Objects under two pixels are sampled 3 x 3
    times in each pixel and averaged.
    """
    cy, cx, a, b, angle, rim = np.broadcast_arrays(
        *(np.asarray(v, dtype=np.float64) for v in (cy, cx, a, b, angle, rim)))
    small = np.maximum(a, b) < 2 * grid.p
    out = np.zeros((grid.ny, grid.nx))
    for pick, ss in ((small, _SUPERSAMPLE), (~small, 1)):
        if pick.any():
            out += _draw_ellipses(grid, cy[pick], cx[pick], a[pick], b[pick], angle[pick], rim[pick], profile, ss)
    return out


_FACET = 1.5  # a faceted particle projects as min(1, 1.5 x a sphere's thickness)


def _radial_box(rho: Any, r: Any, w: float, k: float) -> Any:
    """Mean of ``min(1, k sqrt(1 - x**2 / r**2))`` over ``x`` in ``rho +- w / 2`` (a dome's edge, boxed)."""
    flat = r * math.sqrt(1 - 1 / k**2)  # where the cap at 1 ends

    def chord(x: Any) -> Any:  # integral of sqrt(r**2 - x**2) from 0 to x, 0 <= x <= r
        return 0.5 * (x * np.sqrt(np.maximum(r * r - x * x, 0.0)) + r * r * np.arcsin(np.minimum(x / r, 1.0)))

    def integral(x: Any) -> Any:  # odd, clipped at +-r
        s, x = np.sign(x), np.minimum(np.abs(x), r)
        return s * (np.minimum(x, flat) + k / r * (chord(np.maximum(x, flat)) - chord(flat)))

    return (integral(rho + w / 2) - integral(rho - w / 2)) / w


def _draw_ellipses(
    grid: _Grid, cy: np.ndarray, cx: np.ndarray, a: np.ndarray, b: np.ndarray, angle: np.ndarray,
    rim: np.ndarray, profile: str, ss: int,
) -> np.ndarray:
    w = grid.p / ss  # the width of a sample, over which edges ramp
    amp = np.ones_like(a)
    tiny = np.maximum(a, b) < w
    if tiny.any():
        # Under a sample, only mass and position count: a Gaussian with the shape's mass
        # and second moments (a**2 / 4), widened by half a sample so that it samples well.
        area = math.pi * a[tiny] * b[tiny]
        mass = {"flat": area, "dome": 2 / 3 * area, "facet": (1 - 1 / (3 * _FACET**2)) * area}.get(
            profile, area - math.pi * np.maximum(a[tiny] - rim[tiny], 0) * np.maximum(b[tiny] - rim[tiny], 0))
        var_a, var_b = a[tiny] ** 2 / 4 + w * w / 4, b[tiny] ** 2 / 4 + w * w / 4
        peak, ang = mass / (2 * math.pi * np.sqrt(var_a * var_b)), angle[tiny]

        def blob(dy: np.ndarray, dx: np.ndarray, sel: np.ndarray) -> np.ndarray:
            va, vb, k, t = (v[sel][:, None, None] for v in (var_a, var_b, peak, ang))
            cos, sin = np.cos(t), np.sin(t)
            return k * np.exp(-0.5 * ((dx * cos + dy * sin) ** 2 / va + (dy * cos - dx * sin) ** 2 / vb))

        reach_t = 4 * np.sqrt(np.maximum(var_a, var_b))
        rest = ~tiny
        return _splat(grid, cy[tiny], cx[tiny], reach_t, blob, supersample=ss) + _draw_ellipses(
            grid, cy[rest], cx[rest], a[rest], b[rest], angle[rest], rim[rest], profile, ss)
    if profile == "flat":
        # A disc of radius r with a linear edge ramp of width w holds pi (r**2 + w**2 / 12)
        # (r >= w / 2) or pi (r + w/2)**3 / (3 w); solve for the radius that holds pi r**2.
        r = np.sqrt(a * b)
        fitted = np.where(
            r >= w / math.sqrt(3.0), np.sqrt(np.maximum(r * r - w * w / 12, 0.0)),
            np.maximum(np.cbrt(3 * w * r * r) - w / 2, 0.0),
        )
        amp = np.where(r < w / math.sqrt(24.0), 24 * r * r / (w * w), 1.0)
        scale = np.divide(fitted, r, out=np.zeros_like(r), where=r > 0)
        a, b = a * scale, b * scale
    elif profile in ("dome", "facet"):
        # The radial box of width w adds pi w**2 / 12 times the centre value to the volume.
        volume = np.pi * a * b * (2 / 3 if profile == "dome" else 1 - 1 / (3 * _FACET**2))
        amp = volume / (volume + math.pi * w * w / 12)
    reach = np.maximum(a, b) + w + 1e-9

    def render(dy: np.ndarray, dx: np.ndarray, sel: np.ndarray) -> np.ndarray:
        ea, eb, ang, k = (v[sel][:, None, None] for v in (a, b, angle, amp))
        if profile in ("dome", "facet"):
            cos, sin = np.cos(ang), np.sin(ang)
            radius = np.sqrt(ea * eb)
            rho = radius * np.sqrt(((dx * cos + dy * sin) / ea) ** 2 + ((dy * cos - dx * sin) / eb) ** 2)
            return k * _radial_box(rho, radius, w, 1.0 if profile == "dome" else _FACET)
        depth = _ellipse_depth(dy, dx, np.maximum(ea, 1e-9), np.maximum(eb, 1e-9), ang)
        if profile == "rim":
            return _step(depth, w) - _step(depth - rim[sel][:, None, None], w)
        return k * _step(depth, w)

    return _splat(grid, cy, cx, reach, render, supersample=ss)


def _segments(
    grid: _Grid, y0: np.ndarray, x0: np.ndarray, y1: np.ndarray, x1: np.ndarray, half: np.ndarray,
    *, profile: str = "flat", scale: Any = None,
) -> np.ndarray:
    """Union (max) of straight segments of half-width ``half`` nm: ``flat`` bands or ``cylinder`` s.

    A cylinder's value is its projected thickness over ``scale`` nm (by default
    ``half``: 1 on the axis). Both profiles fall with the distance to the
    segment, so the max over the segments of a path is the profile of the path.
    """
    y0, x0, y1, x1, half = np.broadcast_arrays(*(np.asarray(v, dtype=np.float64) for v in (y0, x0, y1, x1, half)))
    scale = half if scale is None else np.broadcast_to(np.asarray(scale, dtype=np.float64), half.shape)
    p = grid.p
    ly, lx = y1 - y0, x1 - x0
    length = np.hypot(ly, lx)
    ey = np.divide(ly, length, out=np.ones_like(ly), where=length > 0)
    ex = np.divide(lx, length, out=np.zeros_like(lx), where=length > 0)
    reach = length / 2 + half + p

    def render(dy: np.ndarray, dx: np.ndarray, sel: np.ndarray) -> np.ndarray:
        uy, ux, hl, h, k = (v[sel][:, None, None] for v in (ey, ex, length / 2, half, scale))
        along = np.abs(dy * uy + dx * ux) - hl
        dist = np.hypot(np.maximum(along, 0.0), dy * ux - dx * uy)
        if profile == "flat":
            return _band(dist, h, p)
        return _chord(dist, h, p) / k

    cy, cx = (y0 + y1) / 2, (x0 + x1) / 2
    return _splat(grid, cy, cx, reach, render, combine="max")


def _worms(
    rng: np.random.Generator, n: int, length: np.ndarray, persistence: float, step: float,
    starts: np.ndarray,
) -> list[np.ndarray]:
    """Worm-like chains (nm) of ``length``, centred at ``starts`` ``(n, 2)``, tangent persistence in nm."""
    steps = np.maximum(2, np.ceil(length / step).astype(np.int64))
    most = int(steps.max()) if n else 2
    turn = rng.normal(0.0, math.sqrt(2 * step / persistence), (n, most))
    theta = rng.uniform(0, 2 * math.pi, n)[:, None] + np.cumsum(turn, axis=1)
    walk = np.cumsum(step * np.stack([np.sin(theta), np.cos(theta)], -1), axis=1)
    walk = np.concatenate([np.zeros((n, 1, 2)), walk], axis=1)
    paths = []
    for i in range(n):
        path = walk[i, : steps[i] + 1]
        paths.append(path - path[steps[i] // 2] + starts[i])
    return paths


def _path_segments(paths: list[np.ndarray], stride: np.ndarray) -> tuple[np.ndarray, ...]:
    """Segments ``(y0, x0, y1, x1, owner, s)`` joining every ``stride``-th point of each path.

    ``s`` is the segment midpoint's position along its path as a fraction of the length.
    """
    if not paths:
        return tuple(np.zeros((6, 0)))
    points = np.concatenate(paths)
    size = np.array([len(path) for path in paths])
    stride = np.maximum(1, np.asarray(stride, dtype=np.int64))
    kept = (size - 2) // stride + 2  # points 0, k, 2k, ... and the last
    owner = np.repeat(np.arange(len(paths)), kept)
    rank = np.arange(owner.size) - np.repeat(np.cumsum(kept) - kept, kept)
    index = np.minimum(rank * stride[owner], size[owner] - 1)
    at = np.repeat(np.cumsum(size) - size, kept) + index
    pair = np.flatnonzero(owner[:-1] == owner[1:])
    s = (index[pair] + index[pair + 1]) / (2 * (size[owner[pair]] - 1))
    return (*points[at[pair]].T, *points[at[pair + 1]].T, owner[pair], s)


def _rects(grid: _Grid, y0: Any, y1: Any, x0: Any, x1: Any) -> np.ndarray:
    """Exact area coverage summed over axis-aligned rectangles (nm), by corner deltas and cumsums."""
    ny, nx, p = grid.ny, grid.nx, grid.p
    y0, y1 = np.clip(np.asarray(y0) / p, 0, ny), np.clip(np.asarray(y1) / p, 0, ny)
    x0, x1 = np.clip(np.asarray(x0) / p, 0, nx), np.clip(np.asarray(x1) / p, 0, nx)
    keep = (y1 > y0) & (x1 > x0)
    acc = np.zeros((ny + 2) * (nx + 2))
    for ys, xs, sign in ((y0, x0, 1.0), (y0, x1, -1.0), (y1, x0, -1.0), (y1, x1, 1.0)):
        ys, xs = ys[keep], xs[keep]
        iy, ix = np.floor(ys).astype(np.int64), np.floor(xs).astype(np.int64)
        ty, tx = ys - iy, xs - ix
        for dy_, wy in ((0, 1 - ty), (1, ty)):
            for dx_, wx in ((0, 1 - tx), (1, tx)):
                acc += np.bincount((iy + dy_) * (nx + 2) + ix + dx_, sign * wy * wx, minlength=acc.size)
    return np.clip(acc.reshape(ny + 2, nx + 2).cumsum(0).cumsum(1)[:ny, :nx], 0.0, None)


def _smooth01(grid: _Grid, key: int, corr_nm: float, lo: float) -> np.ndarray:
    """A smooth field in ``[lo, 1]``: a random field through the normal CDF."""
    return lo + (1.0 - lo) * ndtr(_grf(grid, key, corr_nm))


# --- families: each returns components, roles, dense roles, drawn parameters ----------------

Family = tuple[dict[str, np.ndarray], list[dict[str, float]], tuple[int, ...], dict[str, Any]]


def _cell(grid: _Grid, key: tuple[int, int]) -> Family:
    rng = _rng(key, 0)
    height, width = grid.height, grid.width
    diameter = _logu(rng, 800.0, 3000.0)
    packing = rng.uniform(0.4, 0.75)
    membrane_nm, envelope_nm = _logu(rng, 6.0, 15.0), _logu(rng, 8.0, 25.0)
    margin = 1.2 * diameter
    outer = (height + 2 * margin) * (width + 2 * margin)
    target = max(1, round(packing * outer / (math.pi / 4 * diameter**2)))
    tries = 4 * target + 8
    centre = grid.scatter(rng, tries, margin)
    centre[0] = rng.uniform(0.3, 0.7, 2) * (height, width)
    a = diameter / 2 * np.exp(0.2 * rng.normal(size=tries))
    b = a * rng.uniform(0.6, 1.0, tries)
    angle = rng.uniform(0, math.pi, tries)
    amps = rng.uniform(-1, 1, (tries, 5)) * 0.06 / np.arange(2, 7)
    phases = rng.uniform(0, 2 * math.pi, (tries, 5))
    kept: list[int] = []
    for i in range(tries):
        if len(kept) == target:
            break
        if kept and np.any(np.hypot(*(centre[kept] - centre[i]).T) < 0.9 * (b[kept] + b[i])):
            continue
        kept.append(i)
    cells = np.array(kept)
    # Nucleus, organelles and granules in each cell's own frame (fractions of a, b).
    n_c = cells.size
    nuc_size = rng.uniform(0.3, 0.45, n_c)
    nuc_aspect = rng.uniform(0.7, 1.0, n_c)
    nuc_offset = rng.uniform(-0.2, 0.2, (n_c, 2))
    nuc_angle = angle[cells] + rng.normal(0, 0.3, n_c)
    area_um2 = math.pi * a[cells] * b[cells] / 1e6
    org_density, gran_density = rng.uniform(2, 6), rng.uniform(8, 25)

    def inside(count: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        owner = np.repeat(np.arange(n_c), count)
        r, t = 0.78 * np.sqrt(rng.uniform(0, 1, owner.size)), rng.uniform(0, 2 * math.pi, owner.size)
        fu, fv = r * np.cos(t), r * np.sin(t)
        nu, nv = (fu - nuc_offset[owner, 0]) / nuc_size[owner], (fv - nuc_offset[owner, 1]) / (
            nuc_size[owner] * nuc_aspect[owner])
        ok = nu**2 + nv**2 > 1.3**2
        c_ = cells[owner]
        u, v = fu * a[c_], fv * b[c_]
        cos, sin = np.cos(angle[c_]), np.sin(angle[c_])
        return ok, centre[c_, 0] + u * sin + v * cos, centre[c_, 1] + u * cos - v * sin

    ok_o, oy, ox = inside(rng.poisson(org_density * area_um2))
    org_a, org_b = _logu(rng, 80.0, 350.0, ok_o.size), _logu(rng, 30.0, 100.0, ok_o.size)
    org_t = rng.uniform(0, math.pi, ok_o.size)
    ok_g, gy, gx = inside(rng.poisson(gran_density * area_um2))
    gran_r = _logu(rng, 10.0, 60.0, ok_g.size)
    tex_keys = _keys(rng, 2)
    cyto_corr, chrom_corr = _logu(rng, 80.0, 400.0), _logu(rng, 30.0, 120.0)

    # Top two depths below any outline: partitions touching cells with one membrane.
    ny, nx, p = grid.ny, grid.nx, grid.p
    d1, d2 = np.full((ny, nx), -1e12), np.full((ny, nx), -1e12)
    owner = np.full((ny, nx), -1)
    nuc_depth = np.full((ny, nx), -1e12)
    boxes = []
    for j, c in enumerate(cells):
        reach = a[c] * 1.12 + p + membrane_nm
        iy, ix = grid.box(centre[c, 0], centre[c, 1], reach)
        if iy.start >= iy.stop or ix.start >= ix.stop:
            continue
        dy = (np.arange(iy.start, iy.stop) + 0.5)[:, None] * p - centre[c, 0]
        dx = (np.arange(ix.start, ix.stop) + 0.5)[None, :] * p - centre[c, 1]
        outline = list(zip(range(2, 7), amps[c], phases[c], strict=True))
        depth = _ellipse_depth(dy, dx, a[c], b[c], angle[c], outline)
        better = depth > d1[iy, ix]
        d2[iy, ix] = np.where(better, d1[iy, ix], np.maximum(d2[iy, ix], depth))
        d1[iy, ix] = np.where(better, depth, d1[iy, ix])
        owner[iy, ix] = np.where(better, j, owner[iy, ix])
        boxes.append((j, c, iy, ix, dy, dx))
    for j, c, iy, ix, dy, dx in boxes:
        cos, sin = math.cos(angle[c]), math.sin(angle[c])
        u0, v0 = nuc_offset[j] * (a[c], b[c])
        ndy, ndx = dy - (u0 * sin + v0 * cos), dx - (u0 * cos - v0 * sin)
        depth = _ellipse_depth(ndy, ndx, nuc_size[j] * a[c], nuc_size[j] * nuc_aspect[j] * b[c], nuc_angle[j])
        nuc_depth[iy, ix] = np.where(owner[iy, ix] == j, depth, nuc_depth[iy, ix])
    to_membrane = np.minimum(d1, (d1 - d2) / 2)
    interior = _step(to_membrane, p)
    nucleus = _step(nuc_depth, p)
    organelles = np.minimum(_ellipses(grid, oy[ok_o], ox[ok_o], org_a[ok_o], org_b[ok_o], org_t[ok_o]), 1.0)
    granules = _ellipses(grid, gy[ok_g], gx[ok_g], gran_r[ok_g], gran_r[ok_g], 0.0, profile="dome")
    components = {
        "membrane": _band(to_membrane, membrane_nm / 2, p),
        "envelope": _band(nuc_depth, envelope_nm / 2, p),
        "nucleus": nucleus * _smooth01(grid, tex_keys[1], chrom_corr, 0.5),
        "cytoplasm": interior * (1 - nucleus) * (1 - organelles) * _smooth01(grid, tex_keys[0], cyto_corr, 0.6),
        "organelles": organelles * interior,
        "granules": granules * interior,
    }
    roles = [
        {"membrane": 1.0, "envelope": 1.0, "nucleus": 0.6, "cytoplasm": 0.08},
        {"cytoplasm": 1.0, "organelles": 0.4, "nucleus": 0.25},
        {"granules": 1.0, "membrane": 0.05},
        {"organelles": 1.0, "granules": 0.3, "cytoplasm": 0.03},
    ]
    params = {"cell_nm": diameter, "packing": packing, "cells": int(n_c), "membrane_nm": membrane_nm,
              "envelope_nm": envelope_nm, "organelles": int(ok_o.sum()), "granules": int(ok_g.sum())}
    return components, roles, (1,), params


def _fibres(grid: _Grid, key: tuple[int, int]) -> Family:
    rng = _rng(key, 0)
    height, width = grid.height, grid.width
    step = 20.0  # nm between the points of a fibre's centre line
    groups, params = {}, {}
    for name, lam, (w_lo, w_hi), (l_lo, l_hi), (p_lo, p_hi) in (
        ("fibres", rng.uniform(0.3, 1.2), (40.0, 200.0), (2000.0, 6000.0), (1000.0, 5000.0)),
        ("network", rng.uniform(1.5, 6.0), (10.0, 40.0), (300.0, 2000.0), (150.0, 1500.0)),
    ):
        mean_length, persistence = _logu(rng, l_lo, l_hi), _logu(rng, p_lo, p_hi)
        margin = mean_length / 2
        n = int(rng.poisson(lam * (height + 2 * margin) * (width + 2 * margin) / 1e6 / (mean_length / 1e3)))
        n += name == "fibres"
        starts = grid.scatter(rng, n, margin)
        if name == "fibres":
            starts[0] = rng.uniform(0.35, 0.65, 2) * (height, width)
        lengths = mean_length * rng.uniform(0.5, 1.5, n)
        widths = _logu(rng, w_lo, w_hi, n)
        wobble = rng.uniform(0, 2 * math.pi, n), rng.uniform(0.0, 0.2, n)
        paths = _worms(rng, n, lengths, persistence, step, starts)
        groups[name] = (paths, widths, wobble)
        params.update({f"{name}_count": n, f"{name}_um_per_um2": lam, f"{name}_length_nm": mean_length,
                       f"{name}_persistence_nm": persistence})
    coat_nm, coated = _logu(rng, 5.0, 25.0), rng.uniform(0.4, 1.0)
    has_coat = rng.uniform(0, 1, len(groups["fibres"][0])) < coated
    junction_nm = _logu(rng, 10.0, 30.0)
    keys = _keys(rng, 1)
    covers = {}
    for name, (paths, widths, (phase, depth)) in groups.items():
        # Chords of about half a width or a pixel, whichever is longer (at least one step).
        y0, x0, y1, x1, own, s = _path_segments(paths, np.rint(np.maximum(widths / 2, grid.p) / step))
        own = own.astype(np.int64)
        half = widths[own] / 2 * (1 + depth[own] * np.sin(2 * math.pi * 3 * s + phase[own]))
        covers[name] = _segments(grid, y0, x0, y1, x1, half, profile="cylinder")
        if name == "fibres":
            pick = has_coat[own]
            # The coat is the projected thickness of a shell: outer cylinder minus inner,
            # over the shell's peak, so bright along the fibre's flanks.
            ends = (y0[pick], x0[pick], y1[pick], x1[pick])
            peak = np.sqrt((half[pick] + coat_nm) ** 2 - half[pick] ** 2)
            covers["coat"] = np.clip(
                _segments(grid, *ends, half[pick] + coat_nm, profile="cylinder", scale=peak)
                - _segments(grid, *ends, half[pick], profile="cylinder", scale=peak), 0.0, 1.0)
    junctions = ndimage.gaussian_filter(covers["fibres"] * covers["network"], junction_nm / grid.p)
    union = np.maximum(covers["fibres"], covers["network"])
    components = {
        "fibres": covers["fibres"], "network": covers["network"], "coat": covers["coat"],
        "junctions": np.minimum(2.0 * junctions, 1.0),
        "matrix": (1 - union) * _smooth01(grid, keys[0], _logu(rng, 200.0, 1000.0), 0.6),
    }
    roles = [
        {"fibres": 1.0, "network": 0.2},
        {"network": 1.0},
        {"coat": 1.0, "junctions": 1.0},
        {"matrix": 1.0},
    ]
    params.update(coat_nm=coat_nm, coated_fraction=coated, junction_nm=junction_nm)
    return components, roles, (0, 3), params


def _porous(grid: _Grid, key: tuple[int, int]) -> Family:
    rng = _rng(key, 0)
    height, width, p = grid.height, grid.width, grid.p
    porosity, alpha = rng.uniform(0.08, 0.3), rng.uniform(2.2, 3.0)
    d_max = _logu(rng, 400.0, 1500.0)
    filled, lined, lining_nm = rng.uniform(0.1, 0.5), rng.uniform(0.2, 0.6), _logu(rng, 5.0, 20.0)
    # Pore diameters follow dN/dd ~ d**-(alpha+1) on [10 nm, d_max]; drawn per octave
    # with the octave's own generator, so octaves wholly below a pixel are left out
    # (as a uniform loss of density) without changing the others.
    edges = 10.0 * 2.0 ** np.arange(0, math.ceil(math.log2(d_max / 10.0)) + 1)
    edges[-1] = d_max
    share = edges[:-1] ** (2 - alpha) - edges[1:] ** (2 - alpha)
    share = porosity * share / share.sum()
    margin = d_max
    outer = (height + 2 * margin) * (width + 2 * margin)
    void = np.zeros((grid.ny, grid.nx))
    fill = np.zeros_like(void)
    rim = np.zeros_like(void)
    unresolved = 0.0
    for k, (lo, hi, phi) in enumerate(zip(edges[:-1], edges[1:], share, strict=True)):
        g = _rng(key, 100 + k)
        mean_d2 = alpha / (alpha - 2) * (lo ** (2 - alpha) - hi ** (2 - alpha)) / (lo**-alpha - hi**-alpha)
        n = int(g.poisson(phi * outer / (math.pi / 4 * mean_d2)))
        d = (lo**-alpha - g.uniform(0, 1, n) * (lo**-alpha - hi**-alpha)) ** (-1 / alpha)
        cy, cx = g.uniform(-margin, height + margin, n), g.uniform(-margin, width + margin, n)
        aspect, angle = g.uniform(0.4, 1.0, n), g.uniform(0, math.pi, n)
        is_filled, is_lined = g.uniform(0, 1, n) < filled, g.uniform(0, 1, n) < lined
        if hi < p:
            unresolved += phi
            continue
        a = d / 2 / np.sqrt(aspect)
        b = a * aspect
        void += _ellipses(grid, cy[~is_filled], cx[~is_filled], a[~is_filled], b[~is_filled], angle[~is_filled])
        fill += _ellipses(grid, cy[is_filled], cx[is_filled], a[is_filled], b[is_filled], angle[is_filled])
        pick = is_lined & ~is_filled
        rim += _ellipses(grid, cy[pick], cx[pick], a[pick], b[pick], angle[pick], profile="rim", rim=lining_nm)
    # Fractures: long, nearly straight, tapered; some filled.
    f_rng = _rng(key, 1)
    n_frac = max(1, int(f_rng.poisson(f_rng.uniform(1.0, 3.0) * grid.area / 1e7)))
    lengths = _logu(f_rng, 1000.0, 8000.0, n_frac)
    starts = np.column_stack([f_rng.uniform(0, height, n_frac), f_rng.uniform(0, width, n_frac)])
    starts[0] = f_rng.uniform(0.3, 0.7, 2) * (height, width)
    frac_w = _logu(f_rng, 5.0, 50.0, n_frac)
    frac_filled = f_rng.uniform(0, 1, n_frac) < 0.5
    paths = _worms(f_rng, n_frac, lengths, _logu(f_rng, 3000.0, 20000.0), 20.0, starts)
    y0, x0, y1, x1, own, s = _path_segments(paths, np.ones(n_frac))
    own = own.astype(np.int64)
    half = frac_w[own] / 2 * np.sqrt(np.sin(math.pi * s))
    crack = _segments(grid, y0, x0, y1, x1, half)
    crack_fill = _segments(grid, y0[frac_filled[own]], x0[frac_filled[own]], y1[frac_filled[own]],
                           x1[frac_filled[own]], half[frac_filled[own]])
    keys = _keys(rng, 3)
    solid = np.clip(1 - np.minimum(void + fill, 1.0), 0.0, 1.0) * (1 - crack) * (1 - unresolved)
    incl = _rng(key, 2)
    n_inc = int(incl.poisson(incl.uniform(1.0, 5.0) * outer / 1e6))
    inc_a = _logu(incl, 15.0, 100.0, n_inc)
    inclusions = np.minimum(_ellipses(
        grid, incl.uniform(-margin, height + margin, n_inc), incl.uniform(-margin, width + margin, n_inc),
        inc_a, inc_a * incl.uniform(0.5, 1.0, n_inc), incl.uniform(0, math.pi, n_inc)), 1.0)
    components = {
        "matrix": solid * _smooth01(grid, keys[0], _logu(rng, 100.0, 400.0), 0.8),
        "fill": np.clip(np.minimum(fill, 1.0) + crack_fill, 0.0, 1.0),
        "lining": np.minimum(rim, 1.0),
        "trace": solid * (0.4 * _smooth01(grid, keys[1], _logu(rng, 50.0, 300.0), 0.0) + inclusions),
    }
    roles = [{"matrix": 1.0}, {"fill": 1.0}, {"lining": 1.0, "fill": 0.1}, {"trace": 1.0}]
    params = {"porosity": porosity, "pore_exponent": alpha, "pore_max_nm": d_max, "filled_fraction": filled,
              "lining_nm": lining_nm, "fractures": n_frac, "unresolved_porosity": unresolved}
    return components, roles, (0,), params


def _polycrystal(grid: _Grid, key: tuple[int, int]) -> Family:
    rng = _rng(key, 0)
    grain = _logu(rng, 150.0, 1000.0)
    margin = 2 * grain
    outer_h, outer_w = grid.height + 2 * margin, grid.width + 2 * margin
    n = max(4, int(rng.poisson(outer_h * outer_w / grain**2)))
    seeds = grid.scatter(rng, n, margin)
    solvent = rng.uniform(0.55, 1.0, n)
    second = rng.uniform(0, 1, n) < rng.uniform(0.1, 0.3)
    diffuse = np.where(rng.uniform(0, 1, n) < rng.uniform(0.3, 0.7), _logu(rng, 10.0, 60.0, n), 0.0)
    segregation_nm = _logu(rng, 4.0, 30.0)
    keys = _keys(rng, 1)
    # Second-phase precipitates of 10-60 nm inside the grains.
    n_pre = int(rng.poisson(rng.uniform(5.0, 20.0) * outer_h * outer_w / 1e6))
    pre_a = _logu(rng, 5.0, 30.0, n_pre)
    where = grid.scatter(rng, n_pre, margin)
    pre_b, pre_t = pre_a * rng.uniform(0.5, 1.0, n_pre), rng.uniform(0, math.pi, n_pre)
    precipitates = np.minimum(_ellipses(grid, where[:, 0], where[:, 1], pre_a, pre_b, pre_t), 1.0)
    y, x = grid.axes()
    pixels = np.column_stack([np.repeat(y.ravel(), grid.nx), np.tile(x.ravel(), grid.ny)])
    dist, idx = cKDTree(seeds).query(pixels, k=3, workers=-1)
    # Distance to the bisector between the nearest seed and the 2nd or 3rd (the nearer).
    gaps = [(dist[:, j] ** 2 - dist[:, 0] ** 2) / (2 * np.linalg.norm(seeds[idx[:, j]] - seeds[idx[:, 0]], axis=1))
            for j in (1, 2)]
    third = gaps[1] < gaps[0]
    to_boundary = np.where(third, gaps[1], gaps[0]).reshape(grid.ny, grid.nx)
    own = idx[:, 0].reshape(grid.ny, grid.nx)
    other = np.where(third, idx[:, 2], idx[:, 1]).reshape(grid.ny, grid.nx)
    blur = np.maximum(diffuse[own], diffuse[other])
    weight = _step(to_boundary, grid.p, blur)

    def across(values: np.ndarray) -> np.ndarray:
        return values[own] * weight + values[other] * (1 - weight)

    segregation = _band(to_boundary, segregation_nm / 2, grid.p, blur)
    texture = 1 + 0.05 * _grf(grid, keys[0], grain / 3)
    phase = np.maximum(across(second.astype(np.float64)), precipitates)
    base = (1 - 0.3 * segregation) * texture
    components = {
        "solvent": (across(solvent) * (1 - phase) + 0.1 * phase) * base,
        "solute": (across(1.05 - solvent) * (1 - phase) + 0.1 * phase) * base,
        "segregant": segregation,
        "second": phase,
    }
    roles = [{"solvent": 1.0}, {"solute": 1.0}, {"segregant": 1.0}, {"second": 1.0, "segregant": 0.2}]
    params = {"grain_nm": grain, "grains": n, "segregation_nm": segregation_nm, "precipitates": n_pre,
              "diffuse_fraction": float(np.mean(diffuse > 0)), "second_phase_fraction": float(np.mean(second))}
    return components, roles, (0,), params


_PERIODS_NM = (30.0, 40.0, 50.0, 60.0, 80.0, 100.0, 130.0, 160.0, 200.0, 250.0, 320.0, 400.0)


def _targets(grid: _Grid, key: tuple[int, int]) -> Family:
    rng = _rng(key, 0)
    tile = _logu(rng, 900.0, 1500.0)
    offset = rng.uniform(0, tile, 2)
    mark_w, mark_arm = _logu(rng, 20.0, 60.0), 0.1 * tile
    p = grid.p
    layers = {name: np.zeros((grid.ny, grid.nx)) for name in ("A", "B", "C", "D")}
    rows = range(math.floor(-offset[0] / tile) - 1, math.ceil((grid.height - offset[0]) / tile) + 1)
    cols = range(math.floor(-offset[1] / tile) - 1, math.ceil((grid.width - offset[1]) / tile) + 1)
    centre = tuple((np.array([grid.height, grid.width]) / 2 - offset) // tile)
    half = 0.35 * tile  # features stay inside the middle 70 % of their tile
    kinds: dict[str, int] = {}

    def grating(across: np.ndarray, along: np.ndarray, period: float, count: int, length: float) -> tuple:
        k = np.clip(np.rint(across / period + (count - 1) / 2), 0, count - 1)
        lines = _band(across - (k - (count - 1) / 2) * period, period / 4, p)
        window = _band(across, count * period / 2, p) * _band(along, length / 2, p)
        return lines * _band(along, length / 2, p), window

    for i in rows:
        for j in cols:
            t = _rng(key, 1, i, j)
            kind = str(t.choice(["lines", "star", "edge", "dots"], p=[0.45, 0.25, 0.2, 0.1]))
            main = "A" if (i, j) == centre or t.uniform() < 0.6 else "B"
            filled = (i, j) == centre or t.uniform() < 0.5
            tilt = math.radians(t.normal(0, 1.5)) + (math.pi / 2) * int(t.integers(4))
            cy, cx = offset[0] + (i + 0.5) * tile, offset[1] + (j + 0.5) * tile
            sy, sx = grid.box(cy, cx, tile / 2)
            kinds[kind] = kinds.get(kind, 0) + 1
            if sy.start >= sy.stop or sx.start >= sx.stop:
                continue
            dy = (np.arange(sy.start, sy.stop) + 0.5)[:, None] * p - cy
            dx = (np.arange(sx.start, sx.stop) + 0.5)[None, :] * p - cx
            c, s = math.cos(tilt), math.sin(tilt)
            u, v = dx * c + dy * s, dy * c - dx * s
            if kind == "lines":
                period = float(t.choice([q for q in _PERIODS_NM if 2 * q <= 2 * half]))
                if 3 * period <= 0.8 * half:  # both orientations side by side
                    count = int(min(10, 0.8 * half // period))
                    f1, w1 = grating(u + 0.5 * half, v, period, count, 1.6 * half)
                    f2, w2 = grating(v, u - 0.5 * half, period, count, 0.8 * half)
                    feature, window = f1 + f2, w1 + w2
                else:
                    count = int(min(10, 2 * half // period))
                    feature, window = grating(u, v, period, count, 2 * half)
            elif kind == "star":
                spokes = int(t.integers(12, 49))
                rho, theta = np.hypot(u, v), np.arctan2(v, u)
                window = _step(half - rho, p)
                sector = int(t.integers(3))  # a full, half or quarter star
                if sector >= 1:
                    window = window * _step(v, p)
                if sector == 2:
                    window = window * _step(u, p)
                feature = window * _step(rho * np.sin(spokes * theta) / spokes, p)
            elif kind == "edge":
                lean = math.radians(t.uniform(2.0, 10.0) * t.choice([-1, 1]))
                cut = u * math.cos(lean) + v * math.sin(lean)
                window = _band(u, half, p) * _band(v, half, p)
                feature = window * _step(cut, p)
                layers["D"][sy, sx] += window * _step(-cut, p)
                filled = False
            else:
                size = _logu(t, 20.0, 200.0)
                count = int(min(10, 2 * half // (2 * size)))
                feature, window = 1.0, 1.0
                for w in (u, v):
                    k = np.clip(np.rint(w / (2 * size) + (count - 1) / 2), 0, count - 1)
                    feature = feature * _band(w - (k - (count - 1) / 2) * 2 * size, size / 2, p)
                    window = window * _band(w, count * size, p)
            layers[main][sy, sx] += feature
            if filled:  # the other element fills the gaps: a complementary pattern
                layers["B" if main == "A" else "A"][sy, sx] += np.clip(window - feature, 0.0, None)
    # Alignment crosses at the tile corners and edge midpoints: a field of 1.28 um
    # or more always shows part of one.
    ky, kx = np.meshgrid(np.arange(2 * rows.start, 2 * rows.stop + 1),
                         np.arange(2 * cols.start, 2 * cols.stop + 1), indexing="ij")
    lattice = (ky % 2 == 0) | (kx % 2 == 0)
    my, mx = offset[0] + ky[lattice] * tile / 2, offset[1] + kx[lattice] * tile / 2
    arms = np.concatenate([
        np.column_stack([my - mark_w / 2, my + mark_w / 2, mx - mark_arm, mx + mark_arm]),
        np.column_stack([my - mark_arm, my + mark_arm, mx - mark_w / 2, mx + mark_w / 2]),
    ])
    layers["C"] += _rects(grid, *arms.T)
    components = {name: np.minimum(layer, 1.0) for name, layer in layers.items()}
    components["adhesion"] = np.minimum(layers["A"] + layers["B"], 1.0)
    roles = [{"A": 1.0}, {"B": 1.0}, {"C": 1.0}, {"D": 1.0, "adhesion": 0.3}]
    params = {"tile_nm": tile, "mark_width_nm": mark_w, **{f"{k}_tiles": v for k, v in sorted(kinds.items())}}
    return components, roles, (0,), params


def _particles(grid: _Grid, key: tuple[int, int]) -> Family:
    rng = _rng(key, 0)
    coverage, median, spread = rng.uniform(0.05, 0.12), _logu(rng, 15.0, 45.0), rng.uniform(0.3, 0.6)
    shares = rng.dirichlet([6.0, 3.0, 1.5, 2.0])  # A, B, alloy AB, core(A)-shell(C)
    clustered, cluster_nm = rng.uniform(0.2, 0.7), _logu(rng, 40.0, 250.0)
    margin = 300.0
    outer = (grid.height + 2 * margin) * (grid.width + 2 * margin)
    mean_area = math.pi / 4 * median**2 * math.exp(2 * spread**2)
    n = int(rng.poisson(coverage * outer / mean_area))
    diameter = np.clip(median * np.exp(spread * rng.normal(size=n)), 10.0, 100.0)
    kind = rng.choice(4, size=n, p=shares)
    core = rng.uniform(0.5, 0.8, n)
    y = rng.uniform(-margin, grid.height + margin, n)
    x = rng.uniform(-margin, grid.width + margin, n)
    in_cluster = rng.uniform(0, 1, n) < clustered
    n_clusters = max(1, int(in_cluster.sum() // 12))
    hubs = grid.scatter(rng, n_clusters, margin)
    which = rng.integers(0, n_clusters, n)
    jitter = rng.normal(0, cluster_nm, (n, 2))
    y = np.where(in_cluster, hubs[which, 0] + jitter[:, 0], y)
    x = np.where(in_cluster, hubs[which, 1] + jitter[:, 1], x)
    keys = _keys(rng, 1)
    r = diameter / 2

    def dome(pick: np.ndarray, radius: np.ndarray) -> np.ndarray:
        return _ellipses(grid, y[pick], x[pick], radius[pick], radius[pick], 0.0, profile="facet")

    shelled = kind == 3
    components = {
        "A": dome(kind == 0, r), "B": dome(kind == 1, r), "alloy": dome(kind == 2, r),
        "core": dome(shelled, r * core),
        "shell": np.clip(dome(shelled, r) - dome(shelled, r * core), 0.0, None),
        "support": _smooth01(grid, keys[0], _logu(rng, 300.0, 1500.0), 0.5),
    }
    roles = [{"A": 1.0, "alloy": 0.5, "core": 1.0}, {"B": 1.0, "alloy": 0.5}, {"shell": 1.5},
             {"support": 0.05, "B": 0.3}]
    params = {"particles": n, "coverage": coverage, "median_nm": median, "clustered_fraction": clustered,
              "cluster_nm": cluster_nm, "shares_A_B_alloy_coreshell": shares}
    return components, roles, (0,), params


def _texture(grid: _Grid, key: tuple[int, int]) -> Family:
    rng = _rng(key, 0)
    corr = np.sort(_logu(rng, 20.0, 1000.0, 5))[::-1]
    k = _keys(rng, 5)
    mix = rng.uniform(0.3, 0.8)
    base = mix * _grf(grid, k[0], corr[0]) + math.sqrt(1 - mix**2) * _grf(grid, k[1], corr[3])
    base /= base.std() or 1.0
    rho, anti = rng.uniform(0.6, 0.95), rng.uniform(0.5, 0.9)
    spread = rng.uniform(0.3, 0.7, 4)
    fields = [
        base,
        rho * base + math.sqrt(1 - rho**2) * _grf(grid, k[2], corr[1]),
        -anti * base + math.sqrt(1 - anti**2) * _grf(grid, k[3], corr[2]),
        _grf(grid, k[4], corr[4]),
    ]
    components = {}
    for name, g, s in zip(("base", "correlated", "anticorrelated", "independent"), fields, spread, strict=True):
        value = np.exp(s * g)
        components[name] = value / np.percentile(value, 99)
    roles = [{name: 1.0} for name in components]
    params = {"corr_nm": corr, "rho": rho, "anti_rho": anti, "log_spread": spread}
    return components, roles, (0, 1, 2, 3), params


def _circuit(grid: _Grid, key: tuple[int, int]) -> Family:
    rng = _rng(key, 0)
    height, width = grid.height, grid.width
    pitch1 = _logu(rng, 80.0, 200.0)
    width1 = pitch1 * rng.uniform(0.35, 0.55)
    rail_every, rail_factor = int(rng.integers(6, 11)), rng.uniform(2.5, 4.0)
    pitch2 = pitch1 * rng.uniform(1.4, 2.5)
    width2 = pitch2 * rng.uniform(0.35, 0.5)
    # Median lengths of wire pieces and of the gaps between them, for M1 and M2.
    runs = [(_logu(rng, 300.0, 1500.0), _logu(rng, 60.0, 300.0)),
            (_logu(rng, 800.0, 3000.0), _logu(rng, 80.0, 400.0))]
    via_p = rng.uniform(0.1, 0.3)
    gate_pitch = _logu(rng, 50.0, 120.0)
    gate_w = gate_pitch * rng.uniform(0.3, 0.45)
    gate_runs = (_logu(rng, 400.0, 2000.0), _logu(rng, 60.0, 300.0))
    off1, off2 = rng.uniform(0, pitch1 * rail_every), rng.uniform(0, pitch2)
    margin = 500.0

    def track_runs(stream: int, index: int, extent: float, run: tuple[float, float]) -> np.ndarray:
        """Start and end (nm) of wire pieces along one track."""
        t = _rng(key, stream, index)
        pos, out = -margin - t.uniform(0, run[0]), []
        while pos < extent + margin:
            length, gap = run[0] * math.exp(0.5 * t.normal()), run[1] * math.exp(0.5 * t.normal())
            if t.uniform() < 0.85:
                out.append((pos, pos + length))
            pos += length + gap
        return np.array(out).reshape(-1, 2)

    m1, m2, gates = [], [], []
    # From a rail above the field, whose row of gates may reach into it.
    first, last = math.floor((-margin - off1) / pitch1) - rail_every, math.ceil((height + margin - off1) / pitch1)
    for k in range(first, last):
        yc = off1 + k * pitch1
        if k % rail_every == 0:
            w = width1 * rail_factor
            m1.append((yc - w / 2, yc + w / 2, -margin, width + margin))
            # A row of gates between this power rail and the next.
            row = track_runs(40, k, width, gate_runs)
            y0, y1 = yc + w / 2 + 0.6 * pitch1, yc + (rail_every - 0.6) * pitch1 - w / 2
            for a, b in row:
                xs = np.arange(math.ceil(a / gate_pitch), math.floor(b / gate_pitch)) * gate_pitch
                gates += [(y0, y1, xg - gate_w / 2, xg + gate_w / 2) for xg in xs]
            continue
        for a, b in track_runs(10, k, width, runs[0]):
            m1.append((yc - width1 / 2, yc + width1 / 2, a, b))
    for k in range(math.floor((-margin - off2) / pitch2), math.ceil((width + margin - off2) / pitch2)):
        xc = off2 + k * pitch2
        for a, b in track_runs(20, k, height, runs[1]):
            m2.append((a, b, xc - width2 / 2, xc + width2 / 2))
    m1a, m2a = np.array(m1).reshape(-1, 4), np.array(m2).reshape(-1, 4)
    # Vias where a wire of each layer crosses, with probability via_p (drawn per M2 wire).
    vias = []
    side = 0.8 * min(width1, width2)
    for n, (a, b, xa, xb) in enumerate(m2a):
        xc = (xa + xb) / 2
        ym = (m1a[:, 0] + m1a[:, 1]) / 2
        ys = np.sort(ym[(m1a[:, 2] < xc) & (m1a[:, 3] > xc) & (ym > a) & (ym < b)])
        chance = _rng(key, 30, n).uniform(0, 1, ys.size)
        vias += [(yv - side / 2, yv + side / 2, xc - side / 2, xc + side / 2) for yv in ys[chance < via_p]]
    pad_rng = _rng(key, 50)
    n_pads = int(pad_rng.poisson((height + 2000) * (width + 2000) / 40e6))
    pads = []
    for _ in range(n_pads):
        s = _logu(pad_rng, 600.0, 2000.0)
        py, px = pad_rng.uniform(-1000, height + 1000), pad_rng.uniform(-1000, width + 1000)
        pads.append((py - s / 2, py + s / 2, px - s / 2, px + s / 2))
        pads.append((py - s / 2 - 3000, py - s / 2, px - width2, px + width2))  # fan-out wire

    def layer(boxes: list[tuple[float, float, float, float]]) -> np.ndarray:
        arr = np.array(boxes, dtype=np.float64).reshape(-1, 4)
        return np.minimum(_rects(grid, arr[:, 0], arr[:, 1], arr[:, 2], arr[:, 3]), 1.0)

    components = {"m1": layer(m1), "m2": layer(m2 + pads), "vias": layer(vias), "gates": layer(gates)}
    roles = [{"m1": 1.0}, {"m2": 1.0}, {"vias": 1.0}, {"gates": 1.0}]
    params = {"m1_pitch_nm": pitch1, "m1_width_nm": width1, "m2_pitch_nm": pitch2, "m2_width_nm": width2,
              "gate_pitch_nm": gate_pitch, "gate_width_nm": gate_w, "vias": len(vias), "pads": n_pads}
    return components, roles, (0, 1), params


_BUILDERS: dict[str, Callable[[_Grid, tuple[int, int]], Family]] = {
    "cell": _cell, "fibres": _fibres, "porous": _porous, "polycrystal": _polycrystal,
    "targets": _targets, "particles": _particles, "texture": _texture, "circuit": _circuit,
}


def _compose(
    family: Family, n: int, key: tuple[int, int], grid: _Grid, *, leak: bool,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Element planes ``(n, ny, nx)`` relative to the brightest element's dense level."""
    components, roles, dense, params = family
    names = list(components)
    rng = _rng(key, 999)
    levels = 10.0 ** rng.uniform(-2.0, 0.0, n)
    candidates = [i for i in range(n) if i % len(roles) in dense] or [0]
    brightest = candidates[int(rng.integers(len(candidates)))]
    levels[brightest] = 1.0
    background = rng.uniform() < 0.5 or "support" in components
    bg_key, bg_corr = _keys(rng, 1)[0], _logu(rng, 500.0, 3000.0)
    planes = np.zeros((n, grid.ny, grid.nx))
    mixes = []
    for i in range(n):
        weights = {c: w * (1.0 if w == 1.0 and j == 0 else rng.uniform(0.7, 1.3))
                   for j, (c, w) in enumerate(roles[i % len(roles)].items())}
        if i >= len(roles):  # a repeated role differs in its mix, not in its main component
            weights = {c: w if j == 0 else w * rng.uniform(0.5, 1.5) for j, (c, w) in enumerate(weights.items())}
        for c in names:
            chance, amount = rng.uniform(), _logu(rng, 0.01, 0.1)
            if leak and c not in weights and chance < 0.25:
                weights[c] = amount
        for c, w in weights.items():
            planes[i] += w * components[c]
        mixes.append({c: round(float(w), 4) for c, w in weights.items()})
    bg_levels = _logu(rng, 0.003, 0.03, n)
    if background:
        field = 0.5 + ndtr(_grf(grid, bg_key, bg_corr))
        planes += bg_levels[:, None, None] * field
    planes *= levels[:, None, None]
    record = {
        "structure": params, "levels": levels, "brightest": brightest, "mix": mixes,
        "background": bg_levels if background else None,
    }
    return np.clip(planes, 0.0, None), record


def _check_family(family: Any) -> str:
    if not isinstance(family, str) or family not in FAMILIES:
        raise ValueError(
            f"family={family!r} is not a known structure family; choose one of "
            f"{', '.join(repr(f) for f in FAMILIES)} (HELD_OUT {HELD_OUT} is for evaluation only)."
        )
    return family


def _check_shape(shape: Any) -> tuple[int, int]:
    try:
        sides = tuple(operator.index(n) for n in shape)
    except TypeError:
        sides = ()
    if len(sides) != 2 or not all(MIN_SIDE <= n <= MAX_SIDE for n in sides):
        hint = (" For a larger field use a larger pixel_nm, or several maps with other seeds."
                if len(sides) == 2 and max(sides) > MAX_SIDE else "")
        raise ValueError(
            f"shape must be two integers (ny, nx), each from {MIN_SIDE} to {MAX_SIDE} pixels; "
            f"got {shape!r}.{hint}"
        )
    return sides


def _check_number(value: Any, name: str, expected: str, upper: float = math.inf) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if isinstance(value, bool) or not (math.isfinite(number) and 0 < number <= upper):
        raise ValueError(f"{name} must be {expected}; got {value!r}.")
    return number


def _check_seed(seed: Any) -> int:
    try:
        value = operator.index(seed)
    except TypeError:
        raise TypeError(f"seed must be an integer >= 0; got {seed!r} ({type(seed).__name__}).") from None
    if value < 0:
        raise ValueError(f"seed must be an integer >= 0; got {seed!r}. Use abs(seed) or another seed.")
    return value


def _check_elements(elements: Any) -> list[str]:
    names = [elements] if isinstance(elements, str) else list(elements)
    if not names or not all(isinstance(e, str) and e for e in names) or len(set(names)) != len(names):
        raise ValueError(
            f"elements must be one or more distinct, non-empty channel names such as "
            f"('P_K', 'S_K', 'Ca_K', 'Fe_K'); got {elements!r}."
        )
    return names


def structure_maps(
    family: str,
    shape: tuple[int, int] = (256, 256),
    *,
    pixel_nm: float = 5.0,
    seed: int = 0,
    elements: Sequence[str] = ("P_K", "S_K", "Ca_K", "Fe_K"),
    counts: float = 1000.0,
) -> xr.DataArray:
    """High-resolution element maps of one structure family, in expected counts per pixel.

    Parameters
    ----------
    family
        One of :data:`FAMILIES`: ``"cell"``, ``"fibres"``, ``"porous"``,
        ``"polycrystal"``, ``"targets"``, ``"particles"``, ``"texture"`` or
        ``"circuit"`` (held out from training, see :data:`HELD_OUT`).
    shape
        ``(ny, nx)`` pixels, each from 8 to 4096.
    pixel_nm
        Pixel size in nm, in ``(0, 100]``. Structures are drawn in nm, so the
        same seed at another pixel size samples the same structure.
    seed
        Seed (an integer >= 0). The maps depend only on the arguments.
    elements
        Channel names, one plane each. The names are labels: element ``i``
        takes the family's role ``i`` (cycling when there are more elements
        than roles; a repeated role gets another mix). With the default names
        a cell's P marks membranes and nuclei, S the cytoplasm, Ca granules
        and Fe organelles.
    counts
        Counts per pixel in the dense regions of the brightest element.

    Returns
    -------
    xarray.DataArray
        Float32 counts ``(element, y, x)``, non-negative and finite; ``y`` and
        ``x`` in nm from 0 at the centre of pixel ``[0, 0]``; ``probe_fwhm_nm``
        None (an ideal point probe). Its provenance record
        ``xrfsr_dask.families.structure_maps`` holds the arguments and what
        was drawn: the structure's parameters, each element's ``levels``
        (relative to ``counts``), its ``mix`` of components, the ``brightest``
        element and the ``background`` levels (None when there is none).

    Raises
    ------
    ValueError
        For an unknown family or an out-of-range shape, pixel size, counts,
        seed or element list, naming the value and what is expected.
    TypeError
        For a seed that is not an integer.

    Notes
    -----
    The roles, in order (element ``i`` takes role ``i mod 4``):

    ===========  ===============================================================
    cell         membranes and nuclei; cytoplasm; granules; organelles
    fibres       thick fibres; filament network; coats and junctions; matrix
    porous       matrix; pore and fracture fill; pore lining; trace in the matrix
    polycrystal  solvent; solute (less where solvent is more); boundary
                 segregant; second-phase grains
    targets      pattern A; pattern B (also A's complement in some tiles);
                 alignment crosses; knife-edge complement and adhesion layer
    particles    A particles, alloy and cores; B particles and alloy; shells;
                 weak support
    texture      base field; correlated; anti-correlated; independent
    circuit      M1 wires and power rails; M2 wires and pads; vias; gates
    ===========  ===============================================================

    Every structure is drawn in the nm frame of the field of view and each
    pixel holds an area average: a sharp edge is the pixel box along its
    normal (a one-pixel ramp), a "diffuse" one that box convolved with a
    Gaussian of the stated nm width; thin bands and small objects keep their
    mass (objects under two pixels are averaged over 3 x 3 samples per pixel);
    fibres are projected cylinders, granules projected spheres and
    nanoparticles faceted ones (flat-topped), all 1 at their centre; circuit
    layouts are exact box coverage.
    Random fields are Fourier syntheses whose coefficients are seeded per
    frequency block, and pores come in size octaves with their own
    generators, so halving the pixel size and doubling the shape gives maps
    whose 2 x 2 bins equal the coarse maps up to sampling. Pore octaves
    wholly below a pixel are replaced by a uniform loss of matrix density.

    Generation time grows with the pixel count and, for the object families,
    with the field of view; a 512 x 512 map takes well under a second.

    Examples
    --------
    >>> maps = structure_maps("cell", (64, 64), pixel_nm=20.0, seed=1)
    >>> maps.dims, maps.shape, str(maps.dtype)
    (('element', 'y', 'x'), (4, 64, 64), 'float32')
    >>> float(maps.x[1]), bool((maps >= 0).all())
    (20.0, True)
    >>> maps.attrs["provenance"][-1]["parameters"]["family"]
    'cell'
    """
    name = _check_family(family)
    sides = _check_shape(shape)
    spacing = _check_number(
        pixel_nm, "pixel_nm",
        f"a pixel size in nm in (0, {MAX_PIXEL_NM:g}] (the structures span 10 nm to 2 um; for coarser "
        "maps generate at a finer pixel and bin, e.g. maps.coarsen(y=2, x=2).mean())", MAX_PIXEL_NM,
    )
    value = _check_seed(seed)
    names = _check_elements(elements)
    level = _check_number(counts, "counts", "a finite number of counts per pixel > 0")
    grid = _Grid(sides[0], sides[1], spacing)
    key = (value, zlib.crc32(name.encode()))
    planes, record = _compose(_BUILDERS[name](grid, key), len(names), key, grid, leak=name != "texture")
    parameters = {
        "family": name, "shape": list(sides), "pixel_nm": spacing, "seed": value, "elements": names,
        "counts": level, **record,
    }
    return xrf_maps(
        (level * planes).astype(np.float32), elements=names, step_nm=spacing, probe_fwhm_nm=None,
        scan_mode="step", operation="xrfsr_dask.families.structure_maps", parameters=parameters,
    )
