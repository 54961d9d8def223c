"""Exception and warning types raised by xrfsr_dask.

Every error the library raises on bad input derives from :class:`XrfsrError`,
so callers can catch the library's own failures without catching bugs in
dependencies. Each subclass also derives from the built-in exception a Python
user would expect (``ValueError``, ``FileNotFoundError``, ...).
"""

from __future__ import annotations

__all__ = [
    "CorruptChunkError",
    "DeviceError",
    "EnhancedFSCWarning",
    "GridMismatchError",
    "IncompleteStoreError",
    "IngestError",
    "LabelMismatchError",
    "MissingMetadataError",
    "ModelCardError",
    "NonFiniteCountsError",
    "SchemaError",
    "SourceNotFoundError",
    "StoreExistsError",
    "StoreLockedError",
    "StoreMetadataError",
    "StoreMismatchError",
    "StoreWriteError",
    "XrfsrError",
    "XrfsrWarning",
]


class XrfsrError(Exception):
    """Base class of every error raised by xrfsr_dask on bad input or state."""


class XrfsrWarning(UserWarning):
    """Warning issued by xrfsr_dask (an error in the library's own test suite)."""


class EnhancedFSCWarning(XrfsrWarning):
    """FRC/FSC between two enhanced datasets: the crossing measures reproducibility, not resolution.

    The same network processed both inputs, so whatever it adds to both
    (sharpened edges, learned texture) correlates between them and counts as
    signal; the crossing can claim detail the data do not hold. Compare one
    enhanced dataset with a ground truth where one exists, or check it
    against the measured data with
    ``xrfsr_dask.consistency.consistency`` (``xrfsr check``).
    """


class SchemaError(XrfsrError, ValueError):
    """A dataset breaks the data-model conventions (dims, coords, attrs)."""


class DeviceError(XrfsrError, ValueError):
    """A device option is malformed (not ``auto``, ``cpu``, ``cuda`` or ``cuda:N``) or names a GPU not there."""


class SourceNotFoundError(XrfsrError, FileNotFoundError):
    """A file, directory or URL given as input does not exist."""


class IngestError(XrfsrError, ValueError):
    """A source file does not have the layout or content its reader expects."""


class NonFiniteCountsError(IngestError):
    """Counts contain NaN or infinite values and the caller did not allow them."""


class StoreExistsError(XrfsrError, FileExistsError):
    """The destination store exists and overwriting was not requested."""


class IncompleteStoreError(XrfsrError, RuntimeError):
    """A store was opened whose write never finished (not marked complete)."""


class CorruptChunkError(XrfsrError, OSError):
    """A stored chunk fails its checksum or cannot be decoded (truncated, overwritten)."""


class StoreLockedError(XrfsrError, RuntimeError):
    """Another job is writing the destination store (its writer marker exists)."""


class StoreWriteError(XrfsrError, OSError):
    """Writing a store failed for good (after the storage layer's retries); it stays incomplete."""


class StoreMismatchError(XrfsrError, ValueError):
    """A resumed write targets a store whose layout differs from the data."""


class StoreMetadataError(XrfsrError, ValueError):
    """A store's zarr metadata cannot be parsed or does not describe a readable array."""


class GridMismatchError(XrfsrError, ValueError):
    """Two datasets that must share a sample grid do not line up (pixel ratio, origin, overlap)."""


class LabelMismatchError(XrfsrError, ValueError):
    """Two datasets that must describe the same maps differ in their labels (elements, angles)."""


class ModelCardError(XrfsrError, ValueError):
    """A model card is missing, malformed, or does not match its weights."""


class MissingMetadataError(XrfsrError, ValueError):
    """An operation needs a description of the scan (e.g. the probe size) that the data do not carry."""
