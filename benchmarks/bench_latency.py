"""Latency of one 720x528 gray frame on the issue-12 protocol (protocols.film_720: film-vtest resized to
720x528, model fit on one keyframe, ~40% of keys missing), every default on, decode excluded.

    PYTHONPATH=python python benchmarks/bench_latency.py [--repeats 60] [--json]

Prints ``hyperchroma bench``'s result (per-stage medians, p50/p99 of ``model.colorize``, images/s) for these
frames, each timed as an unrelated image, and the same model's latency on 40 consecutive frames of vtest.avi
at 720x528 in display order (``film``: the lookup chain's miss memo recalls the previous frame's answers). To compare two builds, run it alternately with PYTHONPATH pointing at each (same machine, same minutes).
"""

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=60)
    ap.add_argument("--frames", type=int, default=6)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    from protocols import film_720, film_720_sequence

    import hyperchroma as hc
    from hyperchroma import bench

    train, test = film_720(1)
    model = hc.fit(train)
    r = bench.run(model, test[: args.frames], repeats=args.repeats, batch=8, film=film_720_sequence())
    r["load_average"] = os.getloadavg()[0]
    print(json.dumps(r) if args.json else bench.format_result(r) + f"\nload average {r['load_average']:.2f}")


if __name__ == "__main__":
    main()
