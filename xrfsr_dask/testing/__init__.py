"""Test helpers: files in beamline layouts and hypothesis strategies."""

from xrfsr_dask.testing.files import grid_positions, particles, write_maps_h5, write_pyxrf_h5, write_tiff

__all__ = ["grid_positions", "particles", "write_maps_h5", "write_pyxrf_h5", "write_tiff"]
