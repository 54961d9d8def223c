"""Reconstruction in PyTorch: a matched projector pair, FBP, SIRT and MLEM.

The projector is pixel-driven: each pixel's value goes to the two detector
bins around ``t + center`` with linear-interpolation weights (so counts are
conserved for pixels inside the detector), and the back-projector gathers
with the same weights, so it is the exact transpose. Both run on whatever
device the tensors are on, so a GPU dask worker needs nothing beyond torch.

SIRT and MLEM use this pair:

* SIRT: ``x <- max(0, x + C A^T R (p - A x))`` with ``R`` and ``C`` the
  inverse row and column sums of ``A`` (the update ASTRA's SIRT makes, with
  its ``MinConstraint`` at 0).
* MLEM: ``x <- x / (A^T 1) * A^T (p / A x)``, the maximum-likelihood update
  for Poisson counts (Shepp & Vardi 1982), started from a uniform image.

References
----------
Gregor, J. & Benson, T. Computational analysis and improvement of SIRT.
IEEE Trans. Med. Imaging 27, 918 (2008), https://doi.org/10.1109/TMI.2008.923696.
Shepp, L. A. & Vardi, Y. Maximum likelihood reconstruction for emission
tomography. IEEE Trans. Med. Imaging 1, 113 (1982),
https://doi.org/10.1109/TMI.1982.4307558.
"""

from __future__ import annotations

import numpy as np
import torch

from xrfsr_dask.tomo._filters import filter_response
from xrfsr_dask.tomo._geometry import angle_weights, pixel_positions

__all__ = ["ANGLE_BLOCK", "Projector", "fbp", "mlem", "sirt"]

ANGLE_BLOCK = 8
"""Angles handled at once: the weights of ``ANGLE_BLOCK · n²`` pixels are held in memory."""

CACHE_BYTES = 512 * 2**20
"""Projectors whose weights for all angles fit in this are computed once and kept."""


class Projector:
    """The pixel-driven parallel-beam projector ``A`` for ``n × n`` slices and its transpose."""

    def __init__(self, theta_deg: np.ndarray, *, n: int, n_det: int, center: float, device: torch.device) -> None:
        self.n, self.n_det, self.device = n, n_det, device
        self.theta = torch.as_tensor(np.deg2rad(np.asarray(theta_deg, dtype=np.float64)), device=device)
        pos = torch.as_tensor(pixel_positions(n), device=device)
        self._y, self._x = (g.reshape(-1) for g in torch.meshgrid(pos, pos, indexing="ij"))
        self.center = float(center)
        n_angles = len(self.theta)
        blocks = [(start, min(start + ANGLE_BLOCK, n_angles)) for start in range(0, n_angles, ANGLE_BLOCK)]
        cached = len(self.theta) * n * n * 16 <= CACHE_BYTES
        self._blocks = [(start, stop, self._weights(start, stop) if cached else None) for start, stop in blocks]

    def _weights(self, start: int, stop: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Flat bin indices into ``(stop - start) · n_det`` and the two weights, per angle and pixel."""
        theta = self.theta[start:stop, None]
        t = self._x * torch.cos(theta) + self._y * torch.sin(theta) + self.center
        low = torch.floor(t)
        upper = (t - low).float()
        low = low.long()
        inside_low = (low >= 0) & (low < self.n_det)
        inside_high = (low + 1 >= 0) & (low + 1 < self.n_det)
        w_low = torch.where(inside_low, 1 - upper, 0.0)
        w_high = torch.where(inside_high, upper, 0.0)
        rows = torch.arange(stop - start, device=self.device)[:, None] * (self.n_det + 1)
        # Bins are laid out with one spare bin per angle so that low + 1 never
        # spills into the next angle; the spare bin only ever gets weight 0.
        index = (low.clamp(-1, self.n_det - 1) + 1 + rows).reshape(-1)
        return index, w_low.reshape(-1), w_high.reshape(-1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """``A x``: images ``(batch, n, n)`` to sinograms ``(batch, angles, n_det)``."""
        batch = images.shape[0]
        flat = images.reshape(batch, 1, -1)
        out = []
        for start, stop, weights in self._blocks:
            index, w_low, w_high = weights or self._weights(start, stop)
            n_ang = stop - start
            bins = torch.zeros(batch, n_ang * (self.n_det + 1) + 1, dtype=images.dtype, device=self.device)
            values = flat.expand(batch, n_ang, -1).reshape(batch, -1)
            bins.index_add_(1, index, values * w_low)
            bins.index_add_(1, index + 1, values * w_high)
            out.append(bins[:, 1:].reshape(batch, n_ang, self.n_det + 1)[..., : self.n_det])
        return torch.cat(out, dim=1)

    def back(self, sino: torch.Tensor) -> torch.Tensor:
        """``A^T p``: sinograms ``(batch, angles, n_det)`` to images ``(batch, n, n)``."""
        batch = sino.shape[0]
        out = torch.zeros(batch, self.n * self.n, dtype=sino.dtype, device=self.device)
        for start, stop, weights in self._blocks:
            index, w_low, w_high = weights or self._weights(start, stop)
            n_ang = stop - start
            bins = torch.nn.functional.pad(sino[:, start:stop], (0, 1)).reshape(batch, -1)
            bins = torch.nn.functional.pad(bins, (1, 0))
            gathered = bins[:, index] * w_low + bins[:, index + 1] * w_high
            out += gathered.reshape(batch, n_ang, -1).sum(dim=1)
        return out.reshape(batch, self.n, self.n)


def fbp(sino: torch.Tensor, theta_deg: np.ndarray, *, center: float, n: int, filter_name: str) -> torch.Tensor:
    """Filtered back-projection of ``(slices, angles, detector)`` to ``(slices, n, n)``."""
    n_det = sino.shape[-1]
    padded = 2 * n_det
    response = torch.as_tensor(filter_response(filter_name, padded), dtype=torch.float32, device=sino.device)
    filtered = torch.fft.ifft(torch.fft.fft(sino, n=padded, dim=-1) * response, dim=-1).real[..., :n_det]
    weights = torch.as_tensor(angle_weights(theta_deg), dtype=sino.dtype, device=sino.device)
    return _back_project(filtered * weights[:, None], theta_deg, center=center, n=n)


def _back_project(sino: torch.Tensor, theta_deg: np.ndarray, *, center: float, n: int) -> torch.Tensor:
    """``A^T p`` of :class:`Projector` (linear interpolation, nothing from outside the detector) by
    ``grid_sample``: each angle's projections of all slices are the channels of one 1-pixel-high image,
    sampled at every pixel's detector position. The same sums as ``Projector.back`` to rounding, without
    its index tensors, which is what makes FBP on a CPU fast; SIRT and MLEM keep the matched pair."""
    slices, n_angles, n_det = sino.shape
    theta = torch.as_tensor(np.deg2rad(np.asarray(theta_deg, dtype=np.float64)), device=sino.device)
    pos = torch.as_tensor(pixel_positions(n), device=sino.device)
    y, x = torch.meshgrid(pos, pos, indexing="ij")
    scale = 2.0 / max(n_det - 1, 1)
    out = torch.zeros(slices, n, n, dtype=sino.dtype, device=sino.device)
    # (angles, slices, 1, n_det), channels-last: the slices of one detector position side by side, which
    # halves grid_sample's time on a CPU.
    images = sino.permute(1, 0, 2)[:, :, None, :].contiguous(memory_format=torch.channels_last)
    for start in range(0, n_angles, ANGLE_BLOCK):
        stop = min(start + ANGLE_BLOCK, n_angles)
        t = x * torch.cos(theta[start:stop, None, None]) + y * torch.sin(theta[start:stop, None, None]) + center
        grid = torch.stack([t * scale - 1.0, torch.zeros_like(t)], dim=-1).to(sino.dtype)
        sampled = torch.nn.functional.grid_sample(images[start:stop], grid, mode="bilinear", padding_mode="zeros",
                                                  align_corners=True)
        out += sampled.sum(dim=0)
    return out


def _inverse(values: torch.Tensor) -> torch.Tensor:
    return torch.where(values > 0, 1.0 / values.clamp_min(1e-12), 0.0)


def sirt(sino: torch.Tensor, theta_deg: np.ndarray, *, center: float, n: int, iterations: int) -> torch.Tensor:
    """``iterations`` SIRT updates from zero, constrained to non-negative values."""
    projector = Projector(theta_deg, n=n, n_det=sino.shape[-1], center=center, device=sino.device)
    ones = torch.ones(1, n, n, dtype=sino.dtype, device=sino.device)
    row = _inverse(projector.forward(ones))
    col = _inverse(projector.back(torch.ones_like(sino[:1])))
    x = torch.zeros(sino.shape[0], n, n, dtype=sino.dtype, device=sino.device)
    for _ in range(iterations):
        x = (x + col * projector.back(row * (sino - projector.forward(x)))).clamp_min(0)
    return x


def mlem(sino: torch.Tensor, theta_deg: np.ndarray, *, center: float, n: int, iterations: int) -> torch.Tensor:
    """``iterations`` MLEM updates from a uniform image of the right total counts."""
    projector = Projector(theta_deg, n=n, n_det=sino.shape[-1], center=center, device=sino.device)
    sensitivity = projector.back(torch.ones_like(sino[:1]))
    seen = sensitivity > 0
    total = sino.clamp_min(0).sum(dim=(1, 2)) / len(theta_deg)
    x = torch.where(seen, 1.0, 0.0) * (total / seen.sum()).reshape(-1, 1, 1)
    inverse_sensitivity = _inverse(sensitivity)
    for _ in range(iterations):
        estimate = projector.forward(x)
        ratio = torch.where(estimate > 0, sino.clamp_min(0) / estimate.clamp_min(1e-12), 0.0)
        x = x * inverse_sensitivity * projector.back(ratio)
    return x
