"""colorize latency in a process that also runs PyTorch: right after a PyTorch op vs after a short sleep,
alternating calls (film_720 protocol, 720x528, every default on).

    PYTHONPATH=python python benchmarks/bench_torch_mix.py
    OMP_WAIT_POLICY=PASSIVE PYTHONPATH=python python benchmarks/bench_torch_mix.py

PyTorch's OpenMP threads busy-wait for a while after each parallel region (libgomp's default active wait), so
for that while they hold the cores our kernels' and ONNX Runtime's threads need. OMP_WAIT_POLICY=PASSIVE (set
before torch is imported) or torch.set_num_threads(1) removes it. Importing torch alone costs nothing.
"""

import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))


def main():
    from protocols import film_720

    import hyperchroma as hc
    from hyperchroma import core

    train, test = film_720(1)
    model = hc.fit(train)
    import torch

    g = test[0]
    x, w = torch.randn(1, 16, 128, 128), torch.randn(16, 16, 3, 3)
    for _ in range(3):
        model.colorize(g)
    res = {"right after a torch op": [], "after a 2 ms sleep": []}
    for i in range(60):
        k = "right after a torch op" if i % 2 == 0 else "after a 2 ms sleep"
        if i % 2 == 0:
            torch.nn.functional.conv2d(x, w, padding=1)
        else:
            time.sleep(0.002)
        core.clear_lookup_memo()  # the one frame repeated, each call as an unrelated image (not timed)
        t0 = time.perf_counter()
        model.colorize(g)
        res[k].append(time.perf_counter() - t0)
    print(f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}, torch threads {torch.get_num_threads()}, "
          f"load average {os.getloadavg()[0]:.2f}: colorize p50 " +
          ", ".join(f"{k} {np.median(v) * 1e3:.1f} ms" for k, v in res.items()))


if __name__ == "__main__":
    main()
