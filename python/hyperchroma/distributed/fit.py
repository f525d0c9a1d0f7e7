"""Fitting on a Dask cluster, equal to :func:`hyperchroma.fit` on the same images.

Per phase (see :mod:`hyperchroma.fitting`), where it runs and why the result is the same:

1. samples: on the workers, per part of the images; image i's pixels are drawn with a generator seeded by
   (``seed``, i) (:func:`fitting.sample_image`), and the parts' samples are concatenated in image order;
2. the quantizer: learned once on the driver from that same array, broadcast to the workers;
3. the color table: an open table per part on the workers (the classifier maps of phase 1 are reused when
   the part runs where it was sampled), merged in a tree of ``split_every`` consecutive tables at a time;
   :meth:`ColorTable.merge` is exact and keeps first-insertion order, so the merged table is the one-process
   table entry for entry, order included;
4. ``finalize``: on the driver;
5. calibration: the picked images' keys on the workers, the k-fold (tables of a few dozen images) on the
   driver with :func:`fitting.calibrate_keys`, the function one-process fitting uses.

Keyframes: each image's decoded size comes back with its samples; the driver picks them
(:func:`fitting.keyframe_picks`) and the workers send those images (64 MiB at most).
"""

from __future__ import annotations

import math
import os
import threading
import uuid
from concurrent.futures import CancelledError
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..classifier import Classifier
from ..fitting import (
    MAP_CACHE_BYTES,
    ClassifierArg,
    HypercolumnSample,
    TrainingImage,
    as_classifier,
    calibrate_keys,
    calibration_picks,
    check_sample_memory,
    keyframe_picks,
    learn_quantizer,
    sample_image,
    training_image,
)
from ..images import ImageError, expand_inputs, load_image
from ..quantizer import Quantizer
from ..settings import FitSettings, split
from ..table import ColorTable
from .cluster import check_client, workers_per_host
from .cluster import task_threads as _share

#: Parts per worker thread when the images come as a list (more parts: better balance, more merges).
PARTS_PER_THREAD = 4
#: Runs of the table tree (phase 3) before a lost worker's broken tree is an error.
TREE_ATTEMPTS = 3

# ------------------------------------------------------------------------------------- on the workers
# Classifier maps of phase 1 kept for phase 3, per worker process: (fit id, image index) -> (image, maps).
_CACHE: Dict[Tuple[str, int], Tuple[TrainingImage, List[np.ndarray]]] = {}
_CACHE_BYTES = [0]
_CACHE_LOCK = threading.Lock()


def _name(item: Any, index: int) -> str:
    return str(item) if isinstance(item, str) else f"image {index}"


def _check_item(item: Any, index: int) -> None:
    if isinstance(item, (str, os.PathLike)) and os.path.isdir(item):
        raise ImageError(f"image {index} is the folder '{os.fspath(item)}': give the images of a Dask bag one by one")


def _sample_part(items: Sequence[Any], offset: int, classifier: Classifier, settings: FitSettings,
                 fit_id: str, cache_bytes: int, per_host: Dict[str, int], threads: Optional[int]
                 ) -> Tuple[np.ndarray, List[int]]:
    """Phase 1 on a part: its images' samples (in order, concatenated) and decoded sizes (for keyframes)."""
    n_threads = _share(per_host, threads)
    samples, sizes = [], []
    for j, item in enumerate(items):
        i = offset + j
        _check_item(item, i)
        rgb = load_image(item)
        t = training_image(rgb, settings.size, _name(item, i), settings.borders)
        sizes.append(int(rgb.nbytes))
        maps = classifier.run(t.gray, threads=n_threads)
        samples.append(sample_image(maps, t.shape, settings, i, classifier.frame(*t.shape)))
        nbytes = sum(m.nbytes for m in maps) + t.gray.nbytes + t.ab.nbytes
        with _CACHE_LOCK:
            if _CACHE_BYTES[0] + nbytes <= cache_bytes:
                _CACHE[(fit_id, i)] = (t, maps)
                _CACHE_BYTES[0] += nbytes
    return np.concatenate(samples), sizes


def _image_and_maps(item: Any, i: int, classifier: Classifier, settings: FitSettings, fit_id: str,
                    threads: int) -> Tuple[TrainingImage, List[np.ndarray]]:
    with _CACHE_LOCK:
        hit = _CACHE.get((fit_id, i))
    if hit is not None:
        return hit
    t = training_image(item, settings.size, _name(item, i), settings.borders)
    return t, classifier.run(t.gray, threads=threads)


def _fill_part(items: Sequence[Any], offset: int, classifier: Classifier, quantizer: Quantizer,
               settings: FitSettings, fit_id: str, per_host: Dict[str, int], threads: Optional[int]) -> ColorTable:
    """Phase 3 on a part: an open table of its images."""
    n_threads = _share(per_host, threads)
    table = ColorTable.empty(quantizer.channels, quantizer.levels, quantizer.weights, settings)
    for j, item in enumerate(items):
        t, maps = _image_and_maps(item, offset + j, classifier, settings, fit_id, n_threads)
        table.insert(quantizer.keys(maps, t.shape, n_threads, classifier.frame(*t.shape)), t.ab)
    return table


def _merge(*tables: ColorTable) -> ColorTable:
    """One open table of several, in their order (the inputs are left alone: a retried task sees them intact)."""
    first = tables[0]
    out = ColorTable(type(first.table).from_state(first.channels, first.levels, first.policy,
                                                  float(first.table.tolerance), float(first.table.vote_bin),
                                                  first.table.state()), first.weights)
    for t in tables[1:]:
        out.merge(t)
    return out


def _keys_of(items: Sequence[Any], offset: int, pick: Sequence[int], classifier: Classifier, quantizer: Quantizer,
             settings: FitSettings, fit_id: str, per_host: Dict[str, int], threads: Optional[int]
             ) -> List[Tuple[TrainingImage, np.ndarray]]:
    """Phase 5's classifier runs: (image, keys) of the part's images ``pick`` (part-local indices)."""
    n_threads = _share(per_host, threads)
    out = []
    for j in pick:
        t, maps = _image_and_maps(items[j], offset + j, classifier, settings, fit_id, n_threads)
        out.append((t, quantizer.keys(maps, t.shape, n_threads, classifier.frame(*t.shape))))
    return out


def _images_of(items: Sequence[Any], pick: Sequence[int]) -> List[np.ndarray]:
    return [load_image(items[j]) for j in pick]


def _forget(fit_id: str) -> None:
    with _CACHE_LOCK:
        for key in [k for k in _CACHE if k[0] == fit_id]:
            t, maps = _CACHE.pop(key)
            _CACHE_BYTES[0] -= sum(m.nbytes for m in maps) + t.gray.nbytes + t.ab.nbytes


# ---------------------------------------------------------------------------------------- the driver
def _parts(client: Any, images: Any, partition_size: Optional[int]) -> Tuple[List[Any], List[int], List[int]]:
    """(the parts' item lists or futures of them (a bag's partitions), their offsets, their lengths)."""
    import dask.bag as db

    if isinstance(images, db.Bag):
        futures = client.compute(images.to_delayed())
        lengths = [int(n) for n in client.gather(client.map(len, futures))]
    else:
        items = expand_inputs(images)
        if partition_size is None:
            threads = sum(workers_per_host(client).values()) or 1
            partition_size = max(1, math.ceil(len(items) / (PARTS_PER_THREAD * threads)))
        if isinstance(partition_size, bool) or not isinstance(partition_size, int) or partition_size < 1:
            raise ValueError(f"partition_size must be a positive integer, got {partition_size!r}")
        chunks = [items[i:i + partition_size] for i in range(0, len(items), partition_size)]
        # The parts travel inside the tasks, not scattered: scattered data dies with its worker, a task's
        # arguments are kept by the scheduler, so a lost worker's tasks can run again elsewhere.
        futures = [[os.fspath(x) if isinstance(x, os.PathLike) else x for x in c] for c in chunks]
        lengths = [len(c) for c in chunks]
    keep = [i for i, n in enumerate(lengths) if n]
    futures, lengths = [futures[i] for i in keep], [lengths[i] for i in keep]
    offsets = [int(x) for x in np.cumsum([0] + lengths[:-1])] if lengths else []
    return futures, offsets, lengths


def _progress(futures: List[Any], desc: str, enabled: bool) -> None:
    if not enabled:
        return
    from distributed import as_completed
    from tqdm import tqdm

    for _ in tqdm(as_completed(futures), total=len(futures), desc=desc, unit="part"):
        pass


def fit(images: Any, client: Any, classifier: ClassifierArg = None, size: int = 224, levels: int = 3,
        policy: str = "mean", *, split_every: int = 8, partition_size: Optional[int] = None,
        progress: bool = False, threads: Optional[int] = None, task_threads: Optional[int] = None,
        **settings: Any) -> Any:
    """Fit a model on a Dask cluster: the same :class:`hyperchroma.Model` as :func:`hyperchroma.fit` with the
    same arguments, entry for entry (and ``save`` writes the same bytes).

    ``images``: a sequence of color images (paths, folders, PIL images, arrays; cut into parts of
    ``partition_size``, by default about 4 per worker thread) or a ``dask.bag.Bag`` of image paths / arrays
    (its partitions are the parts). Paths must be readable by the workers (and folders by the driver).
    ``client``: a ``distributed.Client``. ``split_every``: tables merged per merge task (>= 2).
    ``threads``: the returned model's thread budget (as in :func:`hyperchroma.fit`); ``task_threads``:
    threads per worker task (default: the host's cores over its worker threads). Other keywords are the
    settings of :func:`hyperchroma.fit`.
    """
    from ..model import Model, _check_threads

    check_client(client)
    if isinstance(split_every, bool) or not isinstance(split_every, int) or split_every < 2:
        raise ValueError(f"split_every must be an integer >= 2, got {split_every!r}")
    if task_threads is not None:
        _check_threads(task_threads)
    fit_settings, colorize_settings = split(dict(settings, size=size, levels=levels, policy=policy))
    budget = _check_threads(threads)
    clf = as_classifier(classifier)
    parts, offsets, lengths = _parts(client, images, partition_size)
    n = sum(lengths)
    if n == 0:
        raise ValueError("fit needs at least one color training image")
    check_sample_memory(n, clf.channels, fit_settings)  # the driver gathers every sample
    per_host = workers_per_host(client)
    fit_id = uuid.uuid4().hex
    cache_bytes = MAP_CACHE_BYTES // max(1, len(client.scheduler_info()["workers"]))
    [clf_f] = client.scatter([clf], broadcast=True, hash=False)
    try:
        # 1. samples
        sampled = [client.submit(_sample_part, p, off, clf_f, fit_settings, fit_id, cache_bytes, per_host,
                                 task_threads, pure=False) for p, off in zip(parts, offsets)]
        _progress(sampled, "fit: features", progress)
        results = client.gather(sampled)
        del sampled
        sample = HypercolumnSample(np.concatenate([r[0] for r in results]),
                                   tap_channels=[t.channels for t in clf.taps], tap_names=[t.name for t in clf.taps])
        sizes = [s for r in results for s in r[1]]
        del results
        # 2. quantizer
        quantizer = learn_quantizer(sample, fit_settings.levels, fit_settings.key_channels, fit_settings.balance_taps,
                                    fit_settings.pca_channels, fit_settings.gray_channels)
        del sample
        [q_f] = client.scatter([quantizer], broadcast=True, hash=False)
        # 3. tables, merged in a tree of consecutive parts
        for attempt in range(TREE_ATTEMPTS):
            if attempt:  # scattered data cannot be recomputed: a copy lost with a worker is sent again
                [clf_f, q_f] = client.scatter([clf, quantizer], broadcast=True, hash=False)
            level = [client.submit(_fill_part, p, off, clf_f, q_f, fit_settings, fit_id, per_host, task_threads,
                                   pure=False) for p, off in zip(parts, offsets)]
            _progress(level, "fit: table", progress)
            # every level's futures are held until the root is in, so a finished merge lost with a worker can
            # usually be recomputed from its inputs; when the scheduler still cancels one ("already
            # forgotten"), the tree runs again (the parts travel inside the tasks)
            tree = [level]
            while len(level) > 1:
                level = [client.submit(_merge, *level[i:i + split_every], pure=False)
                         for i in range(0, len(level), split_every)]
                tree.append(level)
            try:
                table = level[0].result()
                break
            except CancelledError:
                if attempt + 1 == TREE_ATTEMPTS:
                    raise
            finally:
                del level, tree
        table.finalize()
        # keyframes and 5. calibration
        keyframes = _gather_by_part(client, parts, offsets, lengths, keyframe_picks(sizes, fit_settings),
                                    lambda p, off, local: client.submit(_images_of, p, local, pure=False))
        calibration = None
        pick = calibration_picks(n, fit_settings)
        if pick:
            data = _gather_by_part(client, parts, offsets, lengths, pick,
                                   lambda p, off, local: client.submit(_keys_of, p, off, local, clf_f, q_f,
                                                                       fit_settings, fit_id, per_host, task_threads,
                                                                       pure=False))
            calibration = calibrate_keys(data, quantizer, fit_settings, colorize_settings, budget)
    finally:
        client.run(_forget, fit_id)
    return Model(clf, quantizer, table, fit_settings, colorize_settings, budget, keyframes, calibration)


def _gather_by_part(client: Any, parts: List[Any], offsets: List[int], lengths: List[int], pick: Sequence[int],
                    submit: Any) -> List[Any]:
    """``submit(part, its offset, local indices)`` for the parts holding images ``pick`` (global, ascending); the results
    joined in ``pick`` order."""
    tasks = []
    for p, off, length in zip(parts, offsets, lengths):
        local = [i - off for i in pick if off <= i < off + length]
        if local:
            tasks.append(submit(p, off, local))
    return [x for r in client.gather(tasks) for x in r]
