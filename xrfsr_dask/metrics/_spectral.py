"""Shell sums of Fourier spectra: the engine under FRC/FSC and the PSD.

Both metrics reduce a spectrum to sums over shells of equal spatial frequency
``|f|`` (rings in 2-D, spherical shells in 3-D). The spectra are real-input
FFTs (``rfftn``), which store only the non-negative half of the last axis;
every other sample of that axis stands for itself and its complex
conjugate, so it is counted twice and the sums equal those over the full
``fftn`` spectrum exactly.

Frequencies are physical (1/nm), so anisotropic voxels need no resampling:
the frequency step of an axis of ``n`` samples of ``d`` nm is ``1/(n d)``.

The same functions serve NumPy and CuPy arrays (array module from the
input) and run per block under dask: a block of a spectrum only needs the
frequencies of its own samples.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from xrfsr_dask._backend import array_module, function, library, to_host

__all__ = ["Shells", "fft_axis0", "rfft_rest", "rfftn", "shell_sums", "window"]

_SLAB_ELEMENTS = 2**21
"""Samples of a spectrum binned at a time; bounds the float64 temporaries (16 MiB each)."""


def rfftn(x: Any, axes: Sequence[int]) -> Any:
    """Real-input FFT over ``axes`` on the device of ``x``, keeping single precision."""
    return function("rfftn", x)(x, axes=tuple(axes))


def rfft_rest(block: Any) -> Any:
    """``rfftn`` over every axis but the first (the first pass over a dask block)."""
    return rfftn(block, axes=range(1, block.ndim))


def fft_axis0(block: Any) -> Any:
    """Complex FFT along the first axis (the last step of an ``rfftn`` done in two passes)."""
    return function("fft", block)(block, axis=0)


def window(spec: str | tuple | None, shape: Sequence[int], dtype: np.dtype) -> np.ndarray | None:
    """Separable apodisation window (product of 1-D ``scipy.signal`` windows), or ``None``."""
    if spec is None:
        return None
    from scipy.signal import get_window

    try:
        profiles = [get_window(spec, n, fftbins=False) for n in shape]
    except (ValueError, TypeError) as err:
        raise ValueError(
            f"window={spec!r} is not a window scipy.signal.get_window knows ({err}); "
            "use e.g. 'hann', 'hamming' or ('tukey', 0.25), or None for no window."
        ) from None
    out = np.ones((), dtype=np.float64)
    for axis, profile in enumerate(profiles):
        out = np.multiply.outer(out, profile) if axis else profile
    return np.asarray(out, dtype=dtype)


@dataclass(frozen=True)
class Shells:
    """Frequency shells of a grid: bin edges in 1/nm and the grid's frequency axes.

    Build with :meth:`linear` (equal-width shells centred on multiples of the
    width, shell 0 holding the zero frequency) or :meth:`log` (equal ratio
    between edges). Samples beyond the last edge (the corners of the
    spectrum, past the smallest Nyquist frequency) belong to no shell.
    """

    shape: tuple[int, ...]
    spacing_nm: tuple[float, ...]
    edges: np.ndarray
    centres: np.ndarray
    width: float | None

    @staticmethod
    def _limits(shape: Sequence[int], spacing_nm: Sequence[float]) -> tuple[float, float]:
        """(coarsest frequency step, highest frequency sampled along every axis), 1/nm."""
        step = max(1.0 / (n * d) for n, d in zip(shape, spacing_nm, strict=True))
        top = min((n // 2) / (n * d) for n, d in zip(shape, spacing_nm, strict=True))
        return step, top

    @classmethod
    def linear(cls, shape: Sequence[int], spacing_nm: Sequence[float], shell_width: float) -> Shells:
        """Shells of ``shell_width`` times the coarsest frequency step, up to the smallest Nyquist."""
        if not (np.isfinite(shell_width) and shell_width > 0):
            raise ValueError(
                f"shell_width must be a positive number of frequency steps; got {shell_width!r}."
            )
        step, top = cls._limits(shape, spacing_nm)
        width = shell_width * step
        count = math.floor(top / width + 1e-9) + 1
        centres = width * np.arange(count)
        edges = width * (np.arange(count + 1) - 0.5)
        return cls(tuple(shape), tuple(spacing_nm), edges, centres, width)

    @classmethod
    def log(cls, shape: Sequence[int], spacing_nm: Sequence[float], n_bins: int) -> Shells:
        """``n_bins`` shells with log-spaced edges from the first frequency step to Nyquist."""
        step, top = cls._limits(shape, spacing_nm)
        edges = np.geomspace(step * (1 - 1e-9), top * (1 + 1e-9), n_bins + 1)
        centres = np.sqrt(edges[:-1] * edges[1:])
        return cls(tuple(shape), tuple(spacing_nm), edges, centres, None)

    @property
    def count(self) -> int:
        return len(self.centres)

    def frequencies(self) -> list[np.ndarray]:
        """Frequency (1/nm) of each sample of an ``rfftn`` spectrum, per axis."""
        *full, last = zip(self.shape, self.spacing_nm, strict=True)
        return [np.fft.fftfreq(n, d) for n, d in full] + [np.fft.rfftfreq(last[0], last[1])]

    def half_weights(self) -> np.ndarray:
        """How many full-spectrum samples each sample of the half (last) axis stands for."""
        n = self.shape[-1]
        weights = np.full(n // 2 + 1, 2.0)
        weights[0] = 1.0
        if n % 2 == 0:
            weights[-1] = 1.0
        return weights

    def index(self, radius_sq: Any, xp: Any) -> Any:
        """Shell of each ``|f|²`` (1/nm², float32, overwritten); ``>= count`` outside every shell."""
        radius = xp.sqrt(radius_sq, out=radius_sq)
        if self.width is not None:
            # floor(r / w + 0.5); r >= 0, so truncation is the floor.
            radius *= 1.0 / self.width
            radius += 0.5
            return radius.astype(xp.intp)
        idx = xp.searchsorted(xp.asarray(self.edges), radius, side="right") - 1
        return xp.where(idx < 0, self.count, idx)


def _slab_sums(
    spectra: Sequence[Any], shells: Shells, f0_sq: Any, plane: Any, edges: Any, mode: str
) -> Any:
    """Shell sums of one slab (a run of the first axis) of half spectra.

    Every sample of the half axis but the edge columns (zero and Nyquist
    frequency) stands for two full-spectrum samples: the sums are taken over
    all columns, doubled, and the edge columns' sums taken off once.
    """
    xp = array_module(*spectra)
    radius_sq = xp.add(f0_sq.reshape((-1,) + (1,) * plane.ndim), plane, dtype=xp.float32)
    idx = shells.index(radius_sq, xp)
    f1 = spectra[0]
    if mode == "cross":
        f2 = spectra[1]
        cross = f1.real * f2.real
        cross += f1.imag * f2.imag
        values = [cross, _power(f1), _power(f2)]
    else:
        values = [_power(f1)]
    size = shells.count
    rows = [None, *values]
    out = xp.zeros((len(rows), size), dtype=xp.float64)
    flat = idx.ravel()
    edge_idx = idx[..., edges].ravel() if edges.size else None
    for row, weights in enumerate(rows):
        total = xp.bincount(flat, weights=None if weights is None else weights.ravel(), minlength=size)
        total = 2 * total[:size]
        if edge_idx is not None:
            edge_weights = None if weights is None else weights[..., edges].ravel()
            total -= xp.bincount(edge_idx, weights=edge_weights, minlength=size)[:size]
        out[row] = total
    return out


def _power(f: Any) -> Any:
    power = f.real * f.real
    power += f.imag * f.imag
    return power


def shell_sums(
    spectra: Sequence[Any],
    shells: Shells,
    *,
    offsets: Sequence[int] | None = None,
    mode: Literal["cross", "power"] = "cross",
) -> np.ndarray:
    """Per-shell sums over (a block of) ``rfftn`` spectra, as a host float64 array.

    Parameters
    ----------
    spectra
        ``(F1, F2)`` for ``mode="cross"``, ``(F,)`` for ``mode="power"``: the
        whole half spectrum, or one block of it.
    shells
        The shells of the full grid.
    offsets
        Index of the block's first sample along each axis (zeros: the whole
        spectrum).
    mode
        ``"cross"`` gives rows ``[n, Σ Re(F1·conj F2), Σ|F1|², Σ|F2|²]``;
        ``"power"`` gives ``[n, Σ|F|²]``; ``n`` counts full-spectrum samples.

    Notes
    -----
    NumPy spectra are summed in one compiled pass
    (:mod:`xrfsr_dask.metrics._shell_kernel`); CuPy spectra by ``bincount``
    over slabs of the first axis of about 2**21 samples, which bounds the
    temporaries.
    """
    first = spectra[0]
    offsets = offsets or [0] * first.ndim
    if library(first) == "numpy":
        from xrfsr_dask.metrics import _shell_kernel  # imports numba: only when a spectrum is summed

        return _shell_kernel.sums(
            list(spectra), shells.shape, shells.spacing_nm, shells.edges, shells.width, list(offsets), mode == "cross"
        )
    xp = array_module(*spectra)
    freqs = [
        f[o : o + size] for f, o, size in zip(shells.frequencies(), offsets, first.shape, strict=True)
    ]
    weights = shells.half_weights()[offsets[-1] : offsets[-1] + first.shape[-1]]
    # |f|² over all axes but the first: the same for every slab.
    plane = np.zeros(first.shape[1:])
    for axis, f in enumerate(freqs[1:]):
        plane = plane + np.expand_dims(f**2, [a for a in range(len(freqs) - 1) if a != axis])
    plane = xp.asarray(plane)
    edges = xp.asarray(np.flatnonzero(weights == 1))
    f0_sq = xp.asarray(freqs[0] ** 2)
    slab = max(1, _SLAB_ELEMENTS // max(1, math.prod(first.shape[1:])))
    starts = range(0, first.shape[0], slab)

    def one(start: int) -> Any:
        stop = min(start + slab, first.shape[0])
        parts = [s[start:stop] for s in spectra]
        # Non-finite input makes the sums non-finite; the caller reports it by name.
        with np.errstate(invalid="ignore", over="ignore"):
            return _slab_sums(parts, shells, f0_sq[start:stop], plane, edges, mode)

    partial_sums = [one(start) for start in starts]
    return to_host(sum(partial_sums[1:], partial_sums[0]))


def _whole_spectrum_sums(arrays: Sequence[Any], shells: Shells, mode: Literal["cross", "power"]) -> np.ndarray:
    spectra = [rfftn(x, axes=range(x.ndim)) for x in arrays]
    return shell_sums(spectra, shells, mode=mode)


def _dask_spectrum_sums(arrays: Sequence[Any], shells: Shells, mode: Literal["cross", "power"]) -> Any:
    """Delayed shell sums of dask arrays too large for memory, chunk by chunk.

    Each chunk of the first axis is transformed over the other axes; the
    spectra are rechunked to whole first axes (split along the second) and
    transformed along the first; each block then adds its own shell sums.
    No step holds more than a few chunks.
    """
    import dask

    first = arrays[0]
    rest = {axis: -1 for axis in range(1, first.ndim)}
    half = (*first.shape[1:-1], first.shape[-1] // 2 + 1)
    # One split of the second axis for every input (their blocks are paired): about the
    # size of the first input's chunks, and at least one slab of shell sums.
    per_row = math.prod(half) / half[0]
    rows = max(1, round(max(first.chunks[0]) * half[0] / first.shape[0]))
    rows = max(rows, math.ceil(_SLAB_ELEMENTS / (per_row * first.shape[0])))
    spectra = []
    for x in arrays:
        x = x.rechunk(rest)
        complex_dtype = np.result_type(x.dtype, np.complex64)
        spectrum = x.map_blocks(
            rfft_rest, dtype=complex_dtype, chunks=(x.chunks[0], *[(n,) for n in half])
        )
        spectrum = spectrum.rechunk({0: -1, 1: rows})
        spectra.append(spectrum.map_blocks(fft_axis0, dtype=complex_dtype))
    parts = []
    blocks = [s.to_delayed().ravel() for s in spectra]
    starts = np.cumsum((0,) + spectra[0].chunks[1][:-1])
    for pieces, start in zip(zip(*blocks, strict=True), starts, strict=True):
        offsets = [0, int(start)] + [0] * (first.ndim - 2)
        parts.append(dask.delayed(shell_sums)(list(pieces), shells, offsets=offsets, mode=mode))
    return dask.delayed(sum)(parts)


def spectrum_sums(arrays: Sequence[Any], shells: Shells, mode: Literal["cross", "power"]) -> Any:
    """Shell sums of the spectra of ``arrays``: computed now, or delayed for dask input."""
    if hasattr(arrays[0], "dask"):
        return _dask_spectrum_sums(arrays, shells, mode)
    return _whole_spectrum_sums(arrays, shells, mode)
