"""Reconstruction with TomoPy, when it is importable (conda-forge; it is not on PyPI)."""

from __future__ import annotations

import numpy as np

__all__ = ["available", "reconstruct"]


def available(device: str) -> str | None:
    """``None`` when TomoPy can run on ``device``, else why not."""
    if device == "cuda":
        return "the tomopy backend runs on the CPU"
    try:
        import tomopy  # noqa: F401
    except ImportError:
        return "tomopy is not importable (conda install -c conda-forge tomopy; it is not on PyPI)"
    return None


def reconstruct(sino, theta_deg, *, center, n, algorithm, iterations, filter_name):  # pragma: no cover
    raise NotImplementedError
