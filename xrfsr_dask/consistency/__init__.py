"""Does an enhanced map agree with what was measured? Poisson data-consistency check and refinement.

An enhanced map ``x`` holds, on a grid ``r`` times finer than the scan, the
counts an ideal point probe would record per scan point. Pushed through the
scan that recorded the low-resolution (LR) data — blur by the probe (and its
motion in a fly scan), sampling at the scan positions — it predicts the LR
expectation ``μ = A x``. :func:`consistency` compares ``μ`` with the
measured counts ``y`` through the Poisson deviance, per pixel and per map;
:func:`refine` moves ``x`` a short way that raises the Poisson likelihood of
``y``, staying near the network's output.

=======================  =====================================================
module                   job
=======================  =====================================================
``operator``             :class:`ScanOperator`: ``A`` and its exact adjoint on
                         bare NumPy/CuPy arrays (the noise-free
                         :func:`~xrfsr_dask.simulate.simulate_scan`)
``poisson``              :func:`poisson_deviance`, :func:`expected_deviance`
``check``                :func:`consistency` (lazy, chunked with halos),
                         :func:`consistency_to_zarr`
``refinement``           :func:`refine_array` (bare arrays), :func:`refine`
                         (lazy, chunked with halos); ``iterations="auto"``
                         stops each map at the discrepancy principle
=======================  =====================================================

Arithmetic is float64 whatever the input dtype (the adjoint is exact to
round-off); maps come back as float32 counts, summaries as float64.
"""

from xrfsr_dask.consistency.check import (
    COUNT_TOLERANCE,
    EXCESS_TOLERANCE,
    consistency,
    consistency_to_zarr,
    consistency_url,
)
from xrfsr_dask.consistency.operator import ScanOperator
from xrfsr_dask.consistency.poisson import MU_FLOOR, expected_deviance, poisson_deviance
from xrfsr_dask.consistency.refinement import AUTO_MAX_ITERATIONS, refine, refine_array

__all__ = [
    "AUTO_MAX_ITERATIONS",
    "COUNT_TOLERANCE",
    "EXCESS_TOLERANCE",
    "MU_FLOOR",
    "ScanOperator",
    "consistency",
    "consistency_to_zarr",
    "consistency_url",
    "expected_deviance",
    "poisson_deviance",
    "refine",
    "refine_array",
]
