"""Running dask work with visible progress, locally or on a distributed cluster."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import dask

__all__ = ["compute"]


def _client() -> Any | None:
    """The active ``distributed.Client``, or ``None`` when there is none."""
    try:
        from distributed import default_client
    except ImportError:  # distributed is a dependency; guard for slim installs
        return None
    try:
        return default_client()
    except ValueError:
        return None


def compute(tasks: Sequence[Any], *, progress: bool, description: str) -> list[Any]:
    """Compute dask collections, showing progress when asked.

    With an active ``distributed.Client`` the tasks run on its cluster and
    progress is ``distributed.progress`` as a text bar (in a notebook too:
    its widget needs ipywidgets; the dashboard shows the same). Otherwise they run on the
    default local scheduler with a ``tqdm`` bar labelled ``description``.
    """
    if not tasks:
        return []
    client = _client()
    if client is not None:
        futures = client.compute(list(tasks))
        if progress:
            from distributed import progress as show_progress

            # A text bar everywhere: in a Jupyter kernel the default is an
            # ipywidgets widget, which is not a dependency and is not shown.
            show_progress(futures, notebook=False)
        return client.gather(futures)
    if not progress:
        return list(dask.compute(*tasks))
    from tqdm.dask import TqdmCallback

    with TqdmCallback(desc=description, unit="task"):
        return list(dask.compute(*tasks))
