"""Make or join a dask cluster for enhancement and reconstruction.

:func:`get_client` returns a ``distributed.Client``:

- ``address=...``: connect to a running scheduler (a dask-jobqueue cluster
  on a batch system, dask-kubernetes, a cloud service; see
  ``docs/enhance.md``);
- otherwise, if a client is already active in this process, that one;
- otherwise a new local cluster: with CUDA GPUs and ``dask_cuda`` installed,
  ``dask_cuda.LocalCUDACluster`` (one worker per GPU); with GPUs but no
  ``dask_cuda``, a ``LocalCluster`` with one single-threaded worker; on a
  CPU machine, a ``LocalCluster`` of processes. GPU workers advertise the
  resource ``GPU=1``, which the tasks of ``enhance(..., device="cuda")``
  require.
"""

from __future__ import annotations

import os
from typing import Any, Literal

from xrfsr_dask._backend import GPU_RESOURCES, resolve_device
from xrfsr_dask.errors import DeviceError

__all__ = ["get_client"]


def get_client(
    kind: Literal["auto", "cpu", "cuda", "gpu"] = "auto",
    *,
    address: str | None = None,
    n_workers: int | None = None,
    threads_per_worker: int | None = None,
    memory_limit: str | float = "auto",
    **cluster_options: Any,
) -> Any:
    """A ``distributed.Client`` to run xrfsr_dask graphs on.

    Parameters
    ----------
    kind
        The device vocabulary of the library, without a GPU index: ``"auto"``, GPU workers when this machine has
        CUDA GPUs, else CPU workers; ``"cuda"`` (or its older name
        ``"gpu"``), GPU workers or a :class:`~xrfsr_dask.errors.DeviceError`;
        ``"cpu"``, CPU workers.
    address
        Scheduler address (``tcp://host:8786``) of a running cluster to join.
    n_workers, threads_per_worker, memory_limit
        For a new CPU cluster; by default one single-threaded worker process
        per core. Worker processes run torch with one thread each (the
        nanny sets ``OMP_NUM_THREADS=1``) and one network call at a time,
        so one worker per core keeps every core busy.
    cluster_options
        Passed on to the cluster class.

    Returns
    -------
    distributed.Client
        Print it, or open ``client.dashboard_link``, to watch the work.
    """
    from distributed import Client, LocalCluster

    if address is not None:
        return Client(address)
    try:
        from distributed import default_client

        return default_client()
    except ValueError:
        pass
    if kind not in ("auto", "cpu", "cuda", "gpu"):
        raise DeviceError(f"kind must be 'auto', 'cpu' or 'cuda'; got {kind!r}.")
    try:
        device = resolve_device("cuda" if kind == "gpu" else kind)
    except DeviceError as err:
        raise DeviceError(f"{err} Or join a GPU cluster (address=...).") from None
    if device != "cpu":
        try:
            from dask_cuda import LocalCUDACluster
        except ImportError:
            cluster = LocalCluster(n_workers=1, threads_per_worker=1, resources=dict(GPU_RESOURCES),
                                   memory_limit=memory_limit, **cluster_options)
        else:
            cluster = LocalCUDACluster(resources=dict(GPU_RESOURCES), memory_limit=memory_limit, **cluster_options)
        return Client(cluster)
    cores = os.cpu_count() or 1
    threads = threads_per_worker or 1
    workers = n_workers or max(1, cores // threads)
    cluster = LocalCluster(n_workers=workers, threads_per_worker=threads, processes=True,
                           memory_limit=memory_limit, **cluster_options)
    return Client(cluster)
