"""Fit and colorize on a Dask cluster (the optional ``[dask]`` extra: ``pip install "hyperchroma[dask]"``).

- :func:`fit`: the phases of :mod:`hyperchroma.fitting` with the classifier runs on the workers: a sample pass
  (each image's pixels drawn with a generator seeded by its index), the quantizer learned once on the driver
  and broadcast, partial color tables on the workers merged in a tree (``split_every`` at a time, in image
  order), the calibration's classifier runs on the workers and its k-fold on the driver. The model equals
  :func:`hyperchroma.fit` on the same images entry for entry and saves to the same bytes.
- :func:`colorize`: images colorized by the workers (a task each) and videos split at their cuts (segments of
  whole shots on the workers, joined in order with the audio: :mod:`.video`), each worker process building
  its model once from the model file's bytes, into one output folder; every file is written whole or not at
  all, and a task that runs again (a worker lost) rewrites the same file, so outputs are never missing or
  duplicated.

``client`` is a ``distributed.Client``; :func:`local_client` starts a local cluster for ``--workers N``.
"""

from __future__ import annotations

from .cluster import client_for, local_client, task_threads
from .colorize import colorize
from .fit import fit

__all__ = ["client_for", "colorize", "fit", "local_client", "task_threads"]
