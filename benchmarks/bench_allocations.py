"""Memory allocated by one ``model.colorize`` call on the issue-12 protocol (protocols.film_720: 720x528 frames,
~40% of keys missing), after a first call at that size, against the allocating path (``details=True``, which
keeps every model-size array) and a numpy peer that only copies the output-sized array.

    HYPERCHROMA_DATA=../shared/data PYTHONPATH=python:benchmarks python benchmarks/bench_allocations.py

tracemalloc sees numpy's array allocations (and Python objects), not the C++ core's own scratch, which is kept
per thread (``cpp/``: thread_local buffers grown once); each row is the peak of traced memory during the call
above what was traced before it, the median of the calls.
"""

import statistics
import tracemalloc

from hyperchroma import core


def peak_during(fn):
    base = tracemalloc.get_traced_memory()[0]
    tracemalloc.reset_peak()
    out = fn()
    peak = tracemalloc.get_traced_memory()[1] - base
    del out
    return peak


def main():
    from protocols import film_720

    import hyperchroma as hc
    from hyperchroma.images import load_image, luma

    train, test = film_720(1)
    model = hc.fit(train)
    grays = [luma(load_image(p)) for p in test[:6]]
    for g in grays:
        model.colorize(g)
        model.colorize(g, details=True)
    rows = []
    tracemalloc.start()
    try:
        for name, fn in (("colorize (the latency path)", lambda g: model.colorize(g)),
                         ("colorize(details=True) (every model-size array kept)",
                          lambda g: model.colorize(g, details=True)),
                         ("numpy peer: a copy of the output-sized array", lambda g: grays[0].repeat(3))):
            for memo in ("on", "forgotten"):
                peaks = []
                for g in grays:
                    if memo == "forgotten":
                        core.clear_lookup_memo()
                    peaks.append(peak_during(lambda: fn(g)))
                rows.append((name, memo, statistics.median(peaks)))
    finally:
        tracemalloc.stop()
    out = grays[0].size * 3
    print(f"720x528 frames, output {out} bytes (uint8 RGB); peak traced bytes during one call, median of {len(grays)}")
    for name, memo, p in rows:
        print(f"{name:55s} memo {memo:9s} {p:9.0f} bytes  ({p - out:+.0f} beyond the output)")


if __name__ == "__main__":
    main()
