"""The Dask side: importing it with a clear message, clients for the CLI, each task's thread share."""

from __future__ import annotations

import contextlib
import os
from typing import Any, Dict, Iterator, Optional


def require_distributed() -> Any:
    """The ``distributed`` module, or a ValueError saying how to install it."""
    try:
        import distributed
    except ImportError:
        raise ValueError('the Dask scheduler needs the [dask] extra: pip install "hyperchroma[dask]"') from None
    return distributed


def check_client(client: Any) -> Any:
    distributed = require_distributed()
    if not isinstance(client, distributed.Client):
        raise TypeError(f"client must be a distributed.Client, got {type(client).__name__}")
    if not client.scheduler_info().get("workers"):
        client.wait_for_workers(1, timeout=60)
    return client


def local_client(workers: int, threads_per_worker: int = 1) -> Any:
    """A client of a new local cluster of ``workers`` processes (closed with the client's cluster)."""
    if isinstance(workers, bool) or not isinstance(workers, int) or not 1 <= workers <= 256:
        raise ValueError(f"workers must be an integer in 1..256, got {workers!r}")
    distributed = require_distributed()
    cluster = distributed.LocalCluster(n_workers=workers, threads_per_worker=threads_per_worker, processes=True,
                                       dashboard_address=":0")
    return distributed.Client(cluster)


@contextlib.contextmanager
def client_for(scheduler: Optional[str] = None, workers: Optional[int] = None) -> Iterator[Any]:
    """A client of the scheduler at ``scheduler`` (``tcp://host:8786``), or of a local cluster of ``workers``
    processes started and stopped here."""
    if scheduler and workers:
        raise ValueError("give either --scheduler ADDRESS or --workers N, not both")
    distributed = require_distributed()
    if scheduler:
        try:
            client = distributed.Client(scheduler, timeout="20s")
        except OSError as e:
            raise ValueError(f"cannot reach the Dask scheduler at {scheduler}: {e}") from None
        try:
            yield client
        finally:
            client.close()
        return
    client = local_client(int(workers or 1))
    try:
        yield client
    finally:
        cluster = client.cluster
        client.close()
        if cluster is not None:
            cluster.close()


def workers_per_host(client: Any) -> Dict[str, int]:
    """How many worker threads each host of the cluster runs (all its workers' nthreads)."""
    out: Dict[str, int] = {}
    for w in client.scheduler_info()["workers"].values():
        host = str(w.get("host", ""))
        out[host] = out.get(host, 0) + int(w.get("nthreads", 1))
    return out


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def task_threads(per_host: Dict[str, int], threads: Optional[int] = None) -> int:
    """Threads one task may use on the worker running it: ``threads`` when given, else the host's cores
    shared among all the tasks its workers run at once (intra-op threads = cores / worker threads)."""
    if threads is not None:
        return threads
    try:
        from distributed import get_worker
        from distributed.comm import get_address_host

        host = get_address_host(get_worker().address)
    except (ImportError, ValueError):
        return 1
    return max(1, min(8, _cores() // max(1, per_host.get(host, 1))))
