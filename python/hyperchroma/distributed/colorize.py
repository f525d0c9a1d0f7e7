"""Colorizing on a Dask cluster: one task per image, a video split at its cuts (:mod:`.video`), one model per
worker process.

ONNX Runtime sessions do not pickle, so the model travels as its file's bytes (broadcast once); each worker
process loads it once (cached by the bytes' digest) with a thread budget of its host's cores over its
worker threads, and keeps the classifier's session for that budget. Each task writes its output through
:func:`hyperchroma.report.save_png_atomic` (a temporary file renamed over the target): a task that fails
part way, or runs again because its worker was lost, leaves no partial file and writes the same name, so
no output is missing or duplicated. The outputs are those of ``hyperchroma colorize`` on one machine, byte
for byte: the same model, the same calls.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import threading
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

from .._fs import remove_stale_temps
from ..images import ImageError, image_paths
from .cluster import check_client, workers_per_host
from .cluster import task_threads as _share

VIDEO_SUFFIXES = (".avi", ".mp4", ".mkv", ".mov", ".m4v", ".webm", ".mpg", ".mpeg", ".wmv", ".flv", ".ts", ".ogv")

# ------------------------------------------------------------------------------------- on the workers
_MODELS: Dict[Tuple[str, int], Any] = {}
_MODELS_LOCK = threading.Lock()


def _model(digest: str, data: bytes, threads: int) -> Any:
    """The model of these file bytes, loaded once per worker process and thread budget."""
    from ..model import load

    key = (digest, threads)
    with _MODELS_LOCK:
        m = _MODELS.get(key)
        if m is None:
            with tempfile.TemporaryDirectory(prefix="hyperchroma-model-") as d:
                path = os.path.join(d, "model.hyc")
                with open(path, "wb") as f:
                    f.write(data)
                m = load(path, threads=threads)
            _MODELS.clear()  # one model per worker process: a new digest replaces the old one
            _MODELS[key] = m
    return m


def _colorize_one(src: str, dst: str, data: bytes, digest: str, overrides: Dict[str, Any], video: Dict[str, Any],
                  per_host: Dict[str, int], threads: Optional[int]) -> Tuple[str, Optional[str]]:
    """Colorize ``src`` into ``dst`` (written whole or not at all): (dst, None), or (src, the error) for a bad
    input. Other exceptions propagate, so Dask retries the task."""
    from PIL import Image

    from ..report import save_png_atomic

    model = _model(digest, data, _share(per_host, threads))
    if overrides:
        model = model.with_settings(**overrides)
    try:
        if video:
            model.colorize_video(src, dst, container=None, progress=False, **video)
        else:
            save_png_atomic(Image.fromarray(model.colorize(src)), dst)
    except (ImageError, ValueError) as e:  # bad input (ImageError, VideoError): reported, not retried
        return src, str(e)
    except MemoryError:
        return src, f"'{src}': out of memory (too large for this worker's memory limit); skipped"
    return dst, None


# ---------------------------------------------------------------------------------------- the driver
def _all_local(per_host: Dict[str, int]) -> bool:
    """Whether every worker runs on this machine (then a dead writer's pid is dead here too)."""
    import socket

    try:
        here = {"127.0.0.1", "localhost", "::1", socket.gethostname(), socket.gethostbyname(socket.gethostname())}
    except OSError:
        here = {"127.0.0.1", "localhost", "::1"}
    return all(h in here for h in per_host)


def _model_bytes(model: Any) -> bytes:
    from ..model import Model

    if isinstance(model, Model):
        with tempfile.TemporaryDirectory(prefix="hyperchroma-model-") as d:
            path = os.path.join(d, "model.hyc")
            model.save(path)
            with open(path, "rb") as f:
                return f.read()
    if isinstance(model, (str, os.PathLike)):
        from ..model import load

        load(model, threads=1)  # a bad file fails here, once, with its ModelFileError
        with open(model, "rb") as f:
            return f.read()
    raise TypeError(f"model must be a hyperchroma.Model or a model file path, got {type(model).__name__}")


def colorize(inputs: Union[str, "os.PathLike[str]", Sequence[Union[str, "os.PathLike[str]"]]], model: Any,
             out_dir: Union[str, "os.PathLike[str]"], client: Any, *, retries: int = 2, progress: bool = False,
             threads: Optional[int] = None, codec: str = "libx264", crf: int = 18, container: str = "mp4",
             split_videos: bool = True, **overrides: Any) -> Dict[str, Any]:
    """Colorize images (and videos, each on one worker) on a Dask cluster into ``out_dir``.

    ``inputs``: image or video paths and folders (listed on the driver, read by the workers); ``model``: a
    :class:`hyperchroma.Model` or a model file; each image gives ``out_dir/STEM.png``, each video
    ``out_dir/STEM.<container>``, as ``hyperchroma colorize`` writes them. ``retries``: extra tries of a task
    that raised (a lost worker's tasks are rerun by the scheduler anyway); ``threads``: threads per task
    (default: the host's cores over its worker threads); keyword ``overrides`` are
    :class:`ColorizeSettings` fields. ``split_videos``: colorize each video in
    segments of whole shots on all the workers (:mod:`hyperchroma.distributed.video`; the same frames as
    one machine), else each video as one task. Returns ``{"written": [paths, input order], "failed": [(input, why)]}``.
    """
    check_client(client)
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise ValueError(f"retries must be an integer >= 0, got {retries!r}")
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or not 1 <= threads <= 256):
        raise ValueError(f"threads must be an integer in 1..256 (or None), got {threads!r}")
    if not 0 <= crf <= 63:
        raise ValueError(f"crf must be in 0..63, got {crf}")
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    found = image_paths(inputs)
    data = _model_bytes(model)
    from ..settings import ColorizeSettings

    if overrides:
        ColorizeSettings().replace(**overrides).checked()  # a bad override fails here, not on every worker
    out = os.fspath(out_dir)
    ext = "." + container.lstrip(".")
    jobs: List[Tuple[str, str, Dict[str, Any]]] = []
    targets: Dict[str, str] = {}
    for p in found:
        is_video = p.suffix.lower() in VIDEO_SUFFIXES
        dst = os.path.join(out, p.stem + (ext if is_video else ".png"))
        if dst in targets:
            raise ImageError(f"inputs '{targets[dst]}' and '{p}' would both write {dst}; rename one")
        if os.path.exists(dst) and os.path.samefile(dst, p):
            raise ImageError(f"writing {dst} would overwrite the input '{p}'; choose another output folder")
        targets[dst] = str(p)
        jobs.append((str(p), dst, {"codec": codec, "crf": crf} if is_video else {}))
    if os.path.exists(out) and not os.path.isdir(out):
        raise ValueError(f"output folder '{out}' exists and is not a folder")
    os.makedirs(out, exist_ok=True)
    digest = hashlib.sha256(data).hexdigest()
    [data_f] = client.scatter([data], broadcast=True, hash=False)
    per_host = workers_per_host(client)
    futures = [client.submit(_colorize_one, src, dst, data_f, digest, overrides, video, per_host, threads,
                             retries=retries, key=f"hyperchroma-colorize-{digest[:12]}-{i}")
               for i, (src, dst, video) in enumerate(jobs) if not (video and split_videos)]
    split: Dict[str, Tuple[str, Optional[str]]] = {}
    if split_videos:
        from .video import colorize_split

        for src, dst, video in jobs:
            if video:  # each film in segments of whole shots over the whole cluster, while the images run
                split[src] = colorize_split(client, src, dst, data_f, digest, video, overrides, per_host, threads,
                                            retries)
    if progress:
        from distributed import as_completed
        from tqdm import tqdm

        for _ in tqdm(as_completed(futures), total=len(futures), desc="colorize", unit="file"):
            pass
    done = iter(client.gather(futures))
    results = [split[src] if src in split else next(done) for src, _, _ in jobs]
    if _all_local(per_host):
        remove_stale_temps(out)  # a worker killed while writing left its temporary file: its pid is gone
    written = [r for r, err in results if err is None]
    failed = [(r, err) for r, err in results if err is not None]
    return {"written": written, "failed": failed}
