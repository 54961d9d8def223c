"""Run an RDN on in-memory maps: normalisation, NaN handling, tiling with halos, device choice.

:func:`predict` is the one place a network meets counts. It divides every
map by its normalisation scale (the card's quantile of the map), runs the
network over tiles whose windows reach ``halo`` LR pixels past the tile on
every side, keeps each tile's core, and multiplies the scale back, so the
result is in counts. Windows never cross the image border: a tile at the
border sees the border exactly as whole-image inference does, so tiling
only truncates context that lies more than ``halo`` pixels away.
"""

from __future__ import annotations

import collections
import threading
import warnings
from typing import Any, Literal

import numpy as np
import torch
from scipy import ndimage

from xrfsr_dask import _backend
from xrfsr_dask.errors import NonFiniteCountsError, XrfsrWarning
from xrfsr_dask.model.data import map_scale
from xrfsr_dask.model.rdn import RDN
from xrfsr_dask.schema import check_nan_policy

__all__ = ["DEFAULT_QUANTILE", "check_options", "predict", "resolve_device", "run_maps", "warn_if_small"]

DEFAULT_QUANTILE = 0.999
"""Normalisation quantile of a network whose card does not name one."""
# One network call at a time per device and process. Torch already spreads a
# call over all cores (or the whole GPU); concurrent calls from dask threads
# would only contend, and would make the result depend on how many threads
# each call happened to get (the summation order of the convolutions).
_DEVICE_LOCKS: collections.defaultdict[str, threading.Lock] = collections.defaultdict(threading.Lock)


def resolve_device(device: str | torch.device) -> torch.device:
    """The torch device of :func:`xrfsr_dask._backend.resolve_device`: ``"auto"`` is the first GPU, else the CPU.

    Raises
    ------
    xrfsr_dask.errors.DeviceError
        Not ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"``, or a GPU this
        machine does not have.
    """
    return torch.device(_backend.resolve_device(device))


def _windows(n: int, tile: int, halo: int) -> list[tuple[int, int, int, int]]:
    """``(window_start, window_stop, core_start, core_stop)`` covering ``range(n)``.

    The axis is split into ``ceil(n / tile)`` cores of equal length (at most
    ``tile``); every window is its core plus ``halo`` on each side, the same
    length for all, shifted inward at the border instead of padded.
    """
    count = -(-n // tile)
    core = -(-n // count)
    width = min(n, core + 2 * halo)
    out = []
    for start_core in range(0, n, core):
        start = min(max(start_core - halo, 0), n - width)
        out.append((start, start + width, start_core, min(start_core + core, n)))
    return out


def _nan_locations(bad: np.ndarray, shape: tuple[int, ...]) -> str:
    where = np.argwhere(bad)
    shown = ", ".join(str(tuple(int(v) for v in w)) for w in where[:5])
    more = f" and {len(where) - 5} more" if len(where) > 5 else ""
    return f"{len(where)} non-finite pixel(s) in the {shape} input at {shown}{more}"


def _fill_nearest(image: np.ndarray, bad: np.ndarray) -> np.ndarray:
    """Each non-finite pixel takes the value of the nearest finite pixel of its map."""
    out = image.copy()
    for index in np.ndindex(image.shape[:-2]):
        mask = bad[index]
        if mask.all():
            out[index] = 0.0
        elif mask.any():
            nearest = ndimage.distance_transform_edt(mask, return_distances=False, return_indices=True)
            out[index] = image[index][tuple(nearest)]
    return out


def predict(
    model: RDN,
    lr: Any,
    *,
    scale: Any = None,
    tile: int = 512,
    halo: int = 16,
    batch_size: int = 8,
    device: str | torch.device = "auto",
    precision: Literal["auto", "fp32", "bf16"] = "auto",
    nan: Literal["raise", "mask"] = "raise",
) -> np.ndarray:
    """Enhance LR maps held in memory with a network; counts in, counts out.

    Parameters
    ----------
    model
        An :class:`~xrfsr_dask.model.RDN` (e.g. from :func:`load_model`).
    lr
        LR maps ``(..., y, x)`` in counts; integers are cast to float32.
    scale
        Per-map normalisation scale, broadcastable to ``lr.shape[:-2]``. By
        default the card's quantile of each map (so a map and 10× that map
        give outputs 10× apart). Pass it when the map is enhanced in pieces,
        so every piece uses the scale of the whole map.
    tile, halo
        Largest tile core and the overlap, in LR pixels; see the module
        docstring. Larger tiles waste less on overlap and need more memory.
    batch_size
        Tiles per network call.
    device
        ``"auto"`` (CUDA when available, else CPU), ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
    precision
        ``"auto"``: the fastest that keeps the output: bf16 autocast on CUDA,
        fp32 on the CPU. The network runs channels-last on every device, on
        a CPU with the dense blocks piece by piece (1.4-3.5 times the
        throughput of the NCHW network in the same process, 1.7-4.4 times
        the library before, which also lacked huge pages; fp32 output
        unchanged to 1e-6 of its range, ``benchmarks/rdn_speed.py``).
        ``"bf16"`` on a CPU with bf16 instructions (AVX512-BF16, AMX) is
        faster still (about 3 times NCHW fp32) but moves the output by
        1.2-1.8 % of its range (``small`` and ``paper`` presets), which is
        why ``"auto"`` does not choose it there; a CPU without them falls
        back to slow generic kernels.
    nan
        ``"raise"``: non-finite input is an error naming where it is.
        ``"mask"``: non-finite pixels are filled from their nearest finite
        neighbour for the network, and their ``scale x scale`` footprint in
        the output is NaN.

    Returns
    -------
    numpy.ndarray
        Float32 counts ``(..., scale·y, scale·x)``.

    Raises
    ------
    NonFiniteCountsError
        Non-finite input with ``nan="raise"``; the message lists the first
        locations.

    Warns
    -----
    XrfsrWarning
        A map smaller than the network's receptive field: pixels near its
        border see zero padding, not data.
    """
    array = np.asarray(lr)
    if array.ndim < 2:
        raise ValueError(f"lr must have dims (..., y, x); got an array of shape {array.shape}.")
    if array.dtype.kind not in "fiub":
        raise TypeError(f"lr must hold numbers; got dtype {array.dtype}.")
    check_options(tile=tile, halo=halo, batch_size=batch_size, nan=nan, precision=precision)
    array = array.astype(np.float32, copy=False)
    warn_if_small(model, array.shape, stacklevel=3)
    return run_maps(model, array, scale=scale, tile=tile, halo=halo, batch_size=batch_size,
                    device=device, precision=precision, nan=nan)


def check_options(*, tile: int, halo: int, batch_size: int, nan: str, precision: str) -> None:
    """Refuse tiling, NaN and precision options that :func:`run_maps` cannot honour, naming them."""
    if halo < 0 or tile < 1 or batch_size < 1:
        raise ValueError(f"halo must be >= 0 and tile, batch_size >= 1; got halo={halo}, tile={tile}, "
                         f"batch_size={batch_size}.")
    check_nan_policy(nan, ("raise", "mask"))
    if precision not in ("auto", "fp32", "bf16"):
        raise ValueError(f"precision must be 'auto', 'fp32' or 'bf16'; got {precision!r}.")


def warn_if_small(model: RDN, shape: tuple[int, ...], *, stacklevel: int) -> None:
    """Warn when maps of this ``(..., y, x)`` shape are smaller than the network's receptive field."""
    field = 2 * model.config.receptive_radius + 1
    if min(shape[-2:]) < field:
        warnings.warn(
            f"the maps ({shape[-2]} x {shape[-1]} px) are smaller than the network's receptive "
            f"field ({field} px); pixels near the border see zero padding, not data.",
            XrfsrWarning, stacklevel=stacklevel,
        )


def run_maps(
    model: RDN, array: np.ndarray, *, scale: Any, tile: int, halo: int, batch_size: int,
    device: str | torch.device, precision: str, nan: str,
) -> np.ndarray:
    """:func:`predict` on checked float32 maps, without the size warning (a chunk is not a map)."""
    bad = ~np.isfinite(array)
    if bad.any():
        if nan == "raise":
            raise NonFiniteCountsError(
                f"{_nan_locations(bad, array.shape)}; fill them, or pass nan='mask' to enhance around "
                "them and get NaN in their output footprint."
            )
        array = _fill_nearest(array, bad)
    quantile = model.card.get("normalisation", {}).get("quantile", DEFAULT_QUANTILE)
    norm = map_scale(array, quantile) if scale is None else np.broadcast_to(
        np.asarray(scale, dtype=np.float64), array.shape[:-2])
    maps = (array / norm[..., None, None]).reshape(-1, *array.shape[-2:]).astype(np.float32)
    out = _run_tiles(model, maps, tile=tile, halo=halo, batch_size=batch_size,
                     device=resolve_device(device), precision=precision)
    out = out.reshape(*array.shape[:-2], *out.shape[-2:]) * norm[..., None, None].astype(np.float32)
    if bad.any():
        s = model.config.scale
        out[np.repeat(np.repeat(bad, s, axis=-2), s, axis=-1)] = np.nan
    return out


def _run_tiles(
    model: RDN, maps: np.ndarray, *, tile: int, halo: int, batch_size: int,
    device: torch.device, precision: str,
) -> np.ndarray:
    s = model.config.scale
    n, ny, nx = maps.shape
    out = np.empty((n, ny * s, nx * s), np.float32)
    jobs = [(k, wy, wx) for k in range(n) for wy in _windows(ny, tile, halo) for wx in _windows(nx, tile, halo)]
    bf16 = precision == "bf16" or (precision == "auto" and device.type == "cuda")
    memory = torch.channels_last  # oneDNN and cuDNN convolutions run fastest on NHWC
    model = model.to(device=device, memory_format=memory).eval()  # type: ignore[call-overload]  # not in the stubs
    with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
        for first in range(0, len(jobs), batch_size):
            group = jobs[first:first + batch_size]
            windows = np.stack([maps[k, wy[0]:wy[1], wx[0]:wx[1]] for k, wy, wx in group])[:, None]
            x = torch.from_numpy(windows).to(device).contiguous(memory_format=memory)
            with _DEVICE_LOCKS[str(device)]:
                y = model(x).float().cpu().numpy()[:, 0]
            for result, (k, wy, wx) in zip(y, group, strict=True):
                rows = slice((wy[2] - wy[0]) * s, (wy[3] - wy[0]) * s)
                cols = slice((wx[2] - wx[0]) * s, (wx[3] - wx[0]) * s)
                out[k, wy[2] * s:wy[3] * s, wx[2] * s:wx[3] * s] = result[rows, cols]
    return out

