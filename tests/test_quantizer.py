"""The quantizer: thresholds (equal-fill levels with ties), projection, validation."""

import numpy as np


def test_learn_thresholds_handles_ties():
    from hyperchroma.quantizer import learn_thresholds

    x = np.concatenate([np.zeros(600), np.linspace(1, 2, 400)]).astype(np.float32)[:, None]
    t = learn_thresholds(x, 3)[0]
    levels = np.searchsorted(t, x[:, 0], side="right")
    counts = np.bincount(levels, minlength=3)
    assert counts[0] == 600 and counts[1] > 150 and counts[2] > 150  # zeros alone, the rest split
    assert np.all(np.diff(t) > 0)
    const = np.ones((100, 1), np.float32)
    t = learn_thresholds(const, 4)[0]
    assert np.all(np.diff(t) >= 0)
