"""What the demo measures, as records: the demo (:mod:`xrfsr_dask.demo`) fills them, the report reads them.

They live apart from both so that the report needs nothing of the demo's
machinery and the two modules do not import each other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import xarray as xr

from xrfsr_dask.probe import GaussianProbe

__all__ = ["TRUTH_PER_STEP", "DemoRun", "Optic", "OpticRun"]

TRUTH_PER_STEP = 4
"""Ground-truth voxels per scan step; the enhanced (x2) grid is two of them."""


@dataclass(frozen=True)
class Optic:
    """One focusing optic of the paper: its probe, the scan step used with it, and the paper's figures.

    ``paper`` holds the numbers Wu et al. (2023) report for it: probe FWHM,
    LR and HR resolution from FSC as half periods ``1 / (2 f)``, combined
    resolution, and PSNR between the two datasets (their formula, see
    :func:`xrfsr_dask.metrics.psnr`).
    """

    name: str
    description: str
    probe_nm: float
    step_nm: float
    threshold: str
    paper: dict[str, float]

    @property
    def truth_voxel_nm(self) -> float:
        return self.step_nm / TRUTH_PER_STEP

    @property
    def probe(self) -> GaussianProbe:
        """The simulated probe: FWHM ``probe_nm`` as the geometric mean of its axes.

        Slightly elliptical (major/minor 1.06, major axis at 25 degrees), as
        real zone plates and MLLs are.
        """
        major = self.probe_nm * 1.03
        return GaussianProbe((major, self.probe_nm**2 / major), angle_deg=25.0)


@dataclass
class OpticRun:
    """What the demo measured for one optic (all in memory, for the report)."""

    optic: Optic
    probe_image: xr.DataArray
    probe_fit: xr.Dataset
    volumes: dict[str, xr.DataArray]
    truth: dict[str, xr.DataArray]
    fsc: dict[str, xr.Dataset]
    psd: dict[str, xr.Dataset]
    psnr_db: dict[str, dict[str, float]]
    alignment_shift_nm: dict[str, float]
    numbers: dict[str, Any] = field(default_factory=dict)
    fsc_warnings: list[str] = field(default_factory=list)
    """What :class:`~xrfsr_dask.errors.EnhancedFSCWarning` said about this optic's FSCs (the enhanced pair)."""
    densities: dict[str, xr.DataArray] = field(default_factory=dict)
    """Dataset a's LR and HR volumes and the ground truth on the HR voxels, in
    :data:`~xrfsr_dask.demo.VOLUME_UNITS`."""
    check: dict[str, Any] = field(default_factory=dict)
    """The consistency check of dataset a: maps and profiles for the figure, numbers for the table."""


@dataclass
class DemoRun:
    """The whole demo: settings, per-optic results, the S1 scan comparison, stage timings."""

    out: Path
    settings: dict[str, Any]
    optics: list[OpticRun]
    scan_modes: dict[str, xr.DataArray]
    seconds: dict[str, float]
