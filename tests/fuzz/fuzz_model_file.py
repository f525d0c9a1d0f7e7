"""Fuzz target for the model loader: for any file, ``hyperchroma.model_io.load`` returns a model or raises
``ModelFileError``, never another exception, a crash or a hang.

    python tests/fuzz/fuzz_model_file.py [-max_total_time=SECONDS] [-runs=N] [-seed=N] [CORPUS_DIR]

With atheris (``pip install ".[dev]"``) this is a coverage-guided libFuzzer target (libFuzzer's options
apply; a crash writes ``crash-*`` and exits non-zero). Without it, a seeded mutation loop of the same shape
(``test_one_input`` on mutants of the seed corpus) runs instead, reports executions and findings, writes
each finding to ``crash-<sha1>.hyc`` in the current folder and exits 1 if there were any.

The seed corpus is made by the code: a tiny fitted model saved with ``model_io.save`` and a small container
holding every dtype of the format. The first input byte says how the file is fixed up before loading (0: as
is; 1: a valid checksum; 2: a valid checksum and file length; 3: also the classifier identity matching the
embedded bytes), so byte mutations reach the header parser and the validators behind the checksum. The
structure-aware mutator (:func:`mutate`, also used by tests/test_model_file.py) sets every field of the
format to hostile values with a valid checksum.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import os
import random
import shutil
import struct
import sys
import tempfile
import time
import zlib
from typing import Any, Callable, Dict, List, Optional, Tuple

FIXED = struct.Struct("<8sHHIQII")
DTYPES = ["uint8", "uint16", "uint32", "uint64", "int32", "int64", "float32", "float64", "bool"]
FOREIGN_DTYPES = ["object", "<f4", ">f4", "U8", "S3", "complex64", "float16", "int8", "V8", "", "M8[s]"]


# ---------------------------------------------------------------------------------------------- file structure
def parse(data: bytes) -> Tuple[list, Any, bytes]:
    """(fixed header fields, header JSON, bytes after the header) of a well-formed file."""
    fields = list(FIXED.unpack_from(data, 0))
    hlen = fields[3]
    return fields, json.loads(data[FIXED.size:FIXED.size + hlen]), data[FIXED.size + hlen:]


def build(fields: list, header: Any, rest: bytes, *, fix_length: bool = True, fix_crc: bool = True) -> bytes:
    """A file from its parts, the JSON padded to the old header length when it fits (offsets stay right)."""
    fields = list(fields)
    text = json.dumps(header).encode() if not isinstance(header, bytes) else header
    if len(text) <= fields[3]:
        text = text.ljust(fields[3], b" ")
    else:
        fields[3] = len(text)
    body = text + rest
    if fix_length:
        fields[4] = FIXED.size + len(body)
    if fix_crc:
        fields[5] = zlib.crc32(body)
    return FIXED.pack(*fields) + body


def roomy(data: bytes, slack: int = 4096) -> bytes:
    """The same file with ``slack`` more header bytes (kept 64-aligned), offsets shifted: mutants fit."""
    fields, header, rest = parse(data)
    fields[3] += slack
    for spec in header["arrays"].values():
        spec["offset"] += slack
    return build(fields, header, rest)


def fix_up(data: bytes) -> bytes:
    """Interpret a fuzz input: first byte = fix-up mode, the rest = the file."""
    if not data:
        return data
    mode, file = data[0] % 4, data[1:]
    if mode == 0 or len(file) < FIXED.size:
        return file
    fields = list(FIXED.unpack_from(file, 0))
    body = file[FIXED.size:]
    if mode >= 3:
        try:
            fields_, header, rest = parse(file)
            arrays = header["arrays"]
            blob = file[arrays["classifier"]["offset"]:][:arrays["classifier"]["nbytes"]]
            header["meta"]["classifier"]["identity"] = hashlib.sha256(blob).hexdigest()
            return build(fields_, header, rest)
        except Exception:  # not parseable: fall back to the length and checksum fix-up
            pass
    if mode >= 2:
        fields[4] = len(file)
    fields[5] = zlib.crc32(body)
    return FIXED.pack(*fields) + body


# ---------------------------------------------------------------------------------------------- hostile values
def hostile_int(rng: random.Random, near: int = 0) -> Any:
    return rng.choice([
        0, 1, -1, near - 1, near + 1, near + 3, near * 2, near + 64, -near, 2**31 - 1, 2**31, 2**32 - 1, 2**32,
        2**63 - 1, 2**63, 2**64, 2**70, 10**400 if rng.random() < 0.1 else 2**53 + 1,
        float(near) + 0.5, float("nan"), float("inf"), str(near), None, True, [near], {},
    ])


def hostile_value(rng: random.Random, old: Any = None) -> Any:
    near = old if isinstance(old, int) and not isinstance(old, bool) else rng.randrange(0, 5000)
    return rng.choice([
        lambda: hostile_int(rng, near), lambda: rng.choice(["", "x", "\udcff" * 0 + "\u00e9", "mean", "vote", "mark",
                                                            "a" * 300]),
        lambda: None, lambda: rng.choice([True, False]), lambda: [], lambda: {}, lambda: [hostile_int(rng, near)] * 3,
        lambda: {"x": hostile_int(rng, near)}, lambda: rng.uniform(-1e308, 1e308), lambda: -0.0,
        lambda: float(rng.choice(["nan", "inf", "-inf"])),
    ])()


def _paths(obj: Any, prefix: tuple = ()) -> List[tuple]:
    """Every key/index path in a JSON value."""
    out = [prefix]
    if isinstance(obj, dict):
        for k, v in obj.items():
            out += _paths(v, prefix + (k,))
    elif isinstance(obj, list) and len(obj) <= 16:
        for i, v in enumerate(obj):
            out += _paths(v, prefix + (i,))
    return out


def _set(obj: Any, path: tuple, value: Any, delete: bool = False) -> Any:
    if not path:
        return value
    parent = obj
    for k in path[:-1]:
        parent = parent[k]
    if delete and isinstance(parent, dict):
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    return obj


def mutate(rng: random.Random, data: bytes) -> Tuple[bytes, str]:
    """One structure-aware mutant of a well-formed file (valid checksum unless the checksum is the target):
    a hostile header length, file length, version, reserved word or checksum; an array's dtype, shape, offset
    or nbytes; an array added, removed or duplicated; a meta field changed, removed or added; array bytes
    changed (with the classifier identity kept matching). Returns (file, what was done)."""
    fields, header, rest = parse(data)
    arrays = header.get("arrays", {})
    kind = rng.choice(["fixed", "array", "array", "array", "arrays", "meta", "meta", "bytes"])
    fix_length = fix_crc = True
    if kind == "fixed":
        i = rng.choice([1, 2, 3, 4, 5, 6])
        limits = {1: 0xFFFF, 2: 0xFFFF, 3: 0xFFFFFFFF, 4: 2**64 - 1, 5: 0xFFFFFFFF, 6: 0xFFFFFFFF}
        v = hostile_int(rng, fields[i])
        v = int(v) % (limits[i] + 1) if isinstance(v, int) else rng.randrange(limits[i] + 1)
        fields[i] = v
        what = f"fixed field {['magic', 'major', 'minor', 'header length', 'file length', 'crc', 'reserved'][i]}={v}"
        if i == 3:  # the header length: pack the raw fields, the JSON stays where it was
            body = json.dumps(header).encode().ljust(parse(data)[0][3], b" ") + rest
            f = list(fields)
            f[4], f[5] = FIXED.size + len(body), zlib.crc32(body)
            return FIXED.pack(*f) + body, what
        fix_length, fix_crc = i != 4, i != 5
    elif kind == "array" and arrays:
        name = rng.choice(sorted(arrays))
        key = rng.choice(["dtype", "shape", "offset", "nbytes"])
        spec = arrays[name]
        old = spec.get(key) if isinstance(spec, dict) else None
        if key == "dtype":
            v: Any = rng.choice(DTYPES + FOREIGN_DTYPES + [hostile_value(rng)])
        elif key == "shape" and isinstance(old, list):
            v = rng.choice([[], [0], [-1], old[::-1], old + [1], old + [0], [2**40, 2**40], [hostile_int(rng, 5)],
                            [d * 2 for d in old if isinstance(d, int)], [1] * 40, hostile_value(rng)])
        elif key == "offset" and isinstance(old, int):
            v = rng.choice([old + rng.choice([1, 2, 4, 8, 32, 63, 64, -64]), len(data), len(data) + 64, 0, 32,
                            hostile_int(rng, old)])
        else:
            v = hostile_int(rng, old if isinstance(old, int) else 0)
        if isinstance(spec, dict):
            spec[key] = v
        what = f"array {name}.{key}={v!r:.80}"
    elif kind == "arrays":
        op = rng.choice(["remove", "add", "rename", "not a dict", "spec not a dict"])
        name = rng.choice(sorted(arrays)) if arrays else "x"
        if op == "remove" and arrays:
            del arrays[name]
        elif op == "add":
            arrays[rng.choice(["extra", "keyframe_7", "calibration_m", name + "_"])] = dict(arrays.get(name) or {})
        elif op == "rename" and arrays:
            arrays[name + "x"] = arrays.pop(name)
        elif op == "not a dict":
            header["arrays"] = rng.choice([[], None, 1, "arrays", list(arrays.values())])
        elif arrays:
            arrays[name] = hostile_value(rng)
        what = f"arrays: {op} {name}"
    elif kind == "meta":
        meta = header.get("meta", {})
        path = rng.choice(_paths(meta))
        if rng.random() < 0.15 and path:
            _set(meta, path, None, delete=True)
            what = f"meta {path} deleted"
        else:
            try:
                cur: Any = meta
                for k in path:
                    cur = cur[k]
            except (KeyError, IndexError, TypeError):
                cur = None
            v = hostile_value(rng, cur)
            header["meta"] = _set(meta, path, v)
            what = f"meta {path}={v!r:.80}"
    else:
        b = bytearray(rest)
        if b:
            for _ in range(rng.randint(1, 8)):
                i = rng.randrange(len(b))
                b[i] = rng.choice([0, 0xFF, 0x7F, 0x80, rng.randrange(256)])
            if rng.random() < 0.3:  # NaN / inf floats, stray key bits: 4 or 8 bytes at once
                i = rng.randrange(max(1, len(b) - 8))
                b[i:i + 4] = rng.choice([b"\x00\x00\xc0\x7f", b"\x00\x00\x80\x7f", b"\xff\xff\xff\xff"])
        rest = bytes(b)
        what = "array bytes"
        try:  # keep the embedded classifier's identity matching, so its bytes reach onnxruntime
            blob = (FIXED.pack(*fields) + json.dumps(header).encode().ljust(fields[3]) + rest)
            spec = arrays["classifier"]
            h = hashlib.sha256(blob[spec["offset"]:spec["offset"] + spec["nbytes"]]).hexdigest()
            header["meta"]["classifier"]["identity"] = h
        except Exception:
            pass
    return build(fields, header, rest, fix_length=fix_length, fix_crc=fix_crc), what


# ---------------------------------------------------------------------------------------------- seeds
def tiny_model_bytes() -> bytes:
    """A tiny fitted model (one small demo frame), as model_io.save writes it."""
    import numpy as np
    from PIL import Image

    import hyperchroma as hc
    from hyperchroma import model_io
    from hyperchroma.demo import demo_frames

    with Image.open(demo_frames()[0][0]) as im:
        small = np.asarray(im.convert("RGB").resize((48, 36)))
    model = hc.fit([small, small[::-1].copy()], size=48, samples_per_image=256, calibration_folds=2)
    with tempfile.TemporaryDirectory() as d:
        p = os.path.join(d, "tiny.hyc")
        model_io.save(model, p)
        with open(p, "rb") as f:
            return f.read()


def every_dtype_bytes() -> bytes:
    import numpy as np

    from hyperchroma import model_file

    arrays = {d: (np.arange(6) % 3).astype(d).reshape(2, 3) for d in DTYPES}
    arrays["empty"] = np.zeros((0, 4), np.float32)
    with tempfile.TemporaryDirectory() as d:
        p = os.path.join(d, "dtypes.hyc")
        model_file.save(p, {"v": [1, {"a": None}]}, arrays)
        with open(p, "rb") as f:
            return f.read()


def seed_corpus(folder: Optional[str] = None) -> List[bytes]:
    """The seed inputs (fix-up byte + file); written to ``folder`` too when given (for libFuzzer)."""
    files = [roomy(tiny_model_bytes()), roomy(every_dtype_bytes())]
    seeds = [bytes([mode]) + f for f in files for mode in (0, 3)]
    if folder:
        os.makedirs(folder, exist_ok=True)
        for s in seeds:
            with open(os.path.join(folder, hashlib.sha1(s).hexdigest()), "wb") as f:
                f.write(s)
    return seeds


# ---------------------------------------------------------------------------------------------- the target
_WORK: Optional[str] = None


def _work() -> str:
    global _WORK
    if _WORK is None:
        _WORK = tempfile.mkdtemp(prefix="hyperchroma-fuzz-")
        atexit.register(shutil.rmtree, _WORK, True)
    return _WORK


def load_file(data: bytes, path: Optional[str] = None) -> None:
    """Load ``data`` as a model file: returns, or raises ModelFileError; anything else is a finding."""
    from hyperchroma import model_io
    from hyperchroma.model_file import ModelFileError

    path = path or os.path.join(_work(), "input.hyc")
    with open(path, "wb") as f:
        f.write(data)
    try:
        model_io.load(path, threads=1)
    except ModelFileError:
        pass


def test_one_input(data: bytes) -> None:
    load_file(fix_up(data))


def _options(argv: List[str]) -> Tuple[Dict[str, str], List[str]]:
    opts, rest = {}, []
    for a in argv:
        if a.startswith("-") and "=" in a:
            k, v = a.lstrip("-").split("=", 1)
            opts[k] = v
        else:
            rest.append(a)
    return opts, rest


def mutation_loop(seconds: float, runs: int, seed: int, log: Callable[[str], None] = print) -> List[Tuple[str, str]]:
    """The fallback fuzzer: structure-aware and byte mutants of the seeds, ``seconds`` or ``runs`` long."""
    rng = random.Random(seed)
    seeds = [fix_up(s) for s in seed_corpus()]
    pool = list(seeds)
    findings: List[Tuple[str, str]] = []
    start, n = time.monotonic(), 0
    while (not runs or n < runs) and time.monotonic() - start < seconds:
        base = rng.choice(pool)
        try:
            if rng.random() < 0.8:
                data, what = mutate(rng, base)
            else:  # raw byte mutations through the fix-up modes
                b = bytearray(base)
                for _ in range(rng.randint(1, 16)):
                    b[rng.randrange(len(b))] = rng.randrange(256)
                if rng.random() < 0.2:
                    b = b[:rng.randrange(len(b))]
                data, what = fix_up(bytes([rng.randrange(4)]) + bytes(b)), "bytes"
        except (ValueError, KeyError, TypeError, IndexError, AttributeError):  # the base is not parseable
            base = rng.choice(seeds)
            continue
        n += 1
        try:
            load_file(data)
            if len(pool) < 64 and rng.random() < 0.05:
                pool.append(data)  # a mutant that still loads: mutate it further
        except Exception as e:  # noqa: BLE001 - anything but ModelFileError is a finding
            name = f"crash-{hashlib.sha1(data).hexdigest()}.hyc"
            with open(name, "wb") as f:
                f.write(data)
            findings.append((what, f"{type(e).__name__}: {str(e)[:200]}"))
            log(f"FINDING after {n} runs ({what}): {type(e).__name__}: {str(e)[:200]} -> {name}")
    log(f"fuzz_model_file: {n} executions in {time.monotonic() - start:.1f} s (seed {seed}), "
        f"{len(findings)} findings")
    return findings


def main(argv: List[str]) -> int:
    opts, rest = _options(argv[1:])
    try:
        import atheris  # type: ignore[import-not-found]
    except ImportError:
        atheris = None
    if atheris is None or opts.get("fallback") == "1":
        seconds = float(opts.get("max_total_time", 60))
        findings = mutation_loop(seconds, int(opts.get("runs", 0)), int(opts.get("seed", 0)))
        return 1 if findings else 0
    corpus = rest[0] if rest else os.path.join(_work(), "corpus")
    with atheris.instrument_imports(include=["hyperchroma"]):  # before anything imports hyperchroma
        import hyperchroma  # noqa: F401
        import hyperchroma.model_file  # noqa: F401
        import hyperchroma.model_io  # noqa: F401
    seed_corpus(corpus)
    argv = [a for a in argv if not a.startswith("-fallback")]
    if not rest:
        argv.append(corpus)
    atheris.Setup(argv, test_one_input)
    atheris.Fuzz()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
