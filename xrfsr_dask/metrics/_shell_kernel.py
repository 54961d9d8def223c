"""Shell sums of NumPy half spectra in one compiled pass.

The NumPy form of :func:`xrfsr_dask.metrics._spectral.shell_sums` builds the
radius of every sample, its shell index and one weighted ``bincount`` per
row, each a pass over arrays the size of the spectrum. Here the spectra are
read once: along the last axis of an ``rfftn`` spectrum the frequency only
grows, so a row walks through the shells in order, each sample is compared
with the squared upper edge of its current shell (no square root), and the
sums of a run of samples in one shell stay in registers until the shell
changes. The half-spectrum weights (1 for the zero and Nyquist columns, 2
elsewhere) are applied on the way. Rows of the first axis are split over
numba's threads, each with its own partial sums.

The grid's geometry (squared frequencies per axis, squared shell edges, the
weights) is computed once per grid and shells and kept (:func:`geometry`).
A sample within a relative 1e-9 of the next edge is placed by the
definition's own rule (``floor(|f| / width + 0.5)`` for linear shells), so
that samples exactly on an edge fall where the definition puts them.
"""

from __future__ import annotations

import functools
import math

import numba
import numpy as np

__all__ = ["geometry", "sums"]


@functools.lru_cache(maxsize=16)
def geometry(
    shape: tuple[int, ...], spacing_nm: tuple[float, ...], edges: tuple[float, ...]
) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """Squared frequencies per axis (1/nm², ``rfftfreq`` on the last), squared edges, half weights."""
    *full, last = zip(shape, spacing_nm, strict=True)
    squares = [np.fft.fftfreq(n, d) ** 2 for n, d in full] + [np.fft.rfftfreq(last[0], last[1]) ** 2]
    n = shape[-1]
    weights = np.full(n // 2 + 1, 2.0)
    weights[0] = 1.0
    if n % 2 == 0:
        weights[-1] = 1.0
    edges_sq = np.where(np.asarray(edges) > 0, np.asarray(edges) ** 2, -np.inf)
    for array in (*squares, weights, edges_sq):
        array.flags.writeable = False
    return squares, edges_sq, weights


@numba.njit(cache=True, error_model="numpy")
def _shell(r2: float, edges: np.ndarray, width: float) -> int:
    """Shell of a sample at squared radius ``r2`` by the definition: ``floor(r / width + 0.5)`` for
    linear shells (``width > 0``), else ``edges[s] <= r < edges[s+1]``; ``count`` beyond the last
    edge, -1 below the first."""
    count = edges.size - 1
    r = math.sqrt(r2)
    shell = math.floor(r / width + 0.5) if width > 0 else np.searchsorted(edges, r, side="right") - 1
    return int(min(shell, count))


@numba.njit(cache=True, error_model="numpy")
def _threshold(shell: int, edges_sq: np.ndarray) -> float:
    """Squared radius below which a sample certainly stays in ``shell`` (inf past the last shell)."""
    if shell >= edges_sq.size - 1:
        return np.inf
    return edges_sq[shell + 1] * (1.0 - 1e-9)


@numba.njit(cache=True, error_model="numpy")
def _flush(acc: np.ndarray, shell: int, count: int, cross: bool, s0: float, s1: float, s2: float, s3: float) -> None:
    """Add one run's sums to its shell's accumulators (runs outside the shells are dropped)."""
    if 0 <= shell < count:
        acc[0, shell] += s0
        acc[1, shell] += s1
        if cross:
            acc[2, shell] += s2
            acc[3, shell] += s3


@numba.njit(cache=True, parallel=True, error_model="numpy")
def _sums(f1, f2, first_sq, middle_sq, last_sq, weights, edges, edges_sq, width, cross, parts):
    """Rows ``[n, Σ Re(f1·conj f2), Σ|f1|², Σ|f2|²]`` (``cross``) or ``[n, Σ|f1|²]`` per shell.

    ``f1``, ``f2``: spectra (n0, n1, n2); ``*_sq``: squared frequencies of
    the first axis, of the flattened middle axes and of the last (half)
    axis, which must grow along it. A sample close to the next edge is
    placed by :func:`_shell`, so that ties fall as the definition says.
    The rows of the first axis are split in ``parts`` runs, each summed by
    one thread into its own partial sums.
    """
    n0, n1, n2 = f1.shape
    count = edges_sq.size - 1
    rows = 4 if cross else 2
    partial = np.zeros((parts, rows, count))
    for part in numba.prange(parts):
        acc = partial[part]
        for i in range(part * n0 // parts, (part + 1) * n0 // parts):
            for j in range(n1):
                base = first_sq[i] + middle_sq[j]
                shell = _shell(base + last_sq[0], edges, width)
                upper = _threshold(shell, edges_sq)
                s0 = s1 = s2 = s3 = 0.0
                for k in range(n2):
                    r2 = base + last_sq[k]
                    if r2 >= upper:
                        next_shell = _shell(r2, edges, width)
                        if next_shell != shell:
                            _flush(acc, shell, count, cross, s0, s1, s2, s3)
                            s0 = s1 = s2 = s3 = 0.0
                            shell = next_shell
                            upper = _threshold(shell, edges_sq)
                    w = weights[k]
                    a = f1[i, j, k]
                    ar, ai = np.float64(a.real), np.float64(a.imag)
                    s0 += w
                    if cross:
                        b = f2[i, j, k]
                        br, bi = np.float64(b.real), np.float64(b.imag)
                        s1 += w * (ar * br + ai * bi)
                        s2 += w * (ar * ar + ai * ai)
                        s3 += w * (br * br + bi * bi)
                    else:
                        s1 += w * (ar * ar + ai * ai)
                _flush(acc, shell, count, cross, s0, s1, s2, s3)
    out = np.zeros((rows, count))
    for part in range(parts):
        out += partial[part]
    return out


def sums(
    spectra: list[np.ndarray],
    shape: tuple[int, ...],
    spacing_nm: tuple[float, ...],
    edges: np.ndarray,
    width: float | None,
    offsets: list[int],
    cross: bool,
) -> np.ndarray:
    """Shell sums of (a block of) NumPy half spectra of the grid ``shape``; rows as in ``shell_sums``.

    ``width``: the shell width of linear shells (1/nm), ``None`` for others.
    """
    edge_values = tuple(float(e) for e in edges)
    squares, edges_sq, weights = geometry(tuple(shape), tuple(spacing_nm), edge_values)
    first = spectra[0]
    axes_sq = [sq[o : o + n] for sq, o, n in zip(squares, offsets, first.shape, strict=True)]
    middle = np.zeros(())
    for sq in axes_sq[1:-1]:
        middle = np.add.outer(middle, sq)
    n0, n2 = first.shape[0], first.shape[-1]
    n1 = math.prod(first.shape[1:-1])
    views = [np.ascontiguousarray(s).reshape(n0, n1, n2) for s in spectra]
    half = weights[offsets[-1] : offsets[-1] + n2]
    return _sums(views[0], views[-1], axes_sq[0], np.ravel(middle), axes_sq[-1], half, np.asarray(edge_values),
                 edges_sq, width or 0.0, cross, min(n0, 4 * numba.get_num_threads()))
