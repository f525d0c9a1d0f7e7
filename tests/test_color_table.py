"""ColorTable: the hash table and its sorted index built from the same entries, open vs finalized."""

import numpy as np
import pytest

from hyperchroma import FitSettings, core
from hyperchroma.table import ColorTable


def test_index_holds_exactly_the_usable_entries(rng):
    levels, channels = 3, 6
    keys = np.unique(rng.integers(0, levels, (500, channels), dtype=np.uint8), axis=0)
    ab = rng.uniform(-50, 50, (len(keys), 2)).astype(np.float32)
    w = rng.normal(size=channels).astype(np.float32)
    t = ColorTable.empty(channels, levels, w, FitSettings(policy="mark"))
    packed = core.pack_keys(keys, levels)
    t.insert(packed, ab)
    t.insert(packed[:7], ab[:7] + 90)  # conflicts
    with pytest.raises(ValueError, match="finalize"):
        t.index
    t.finalize()
    e = t.entries()
    usable = ~e["conflicting"]
    assert e["conflicting"].sum() == 7 and len(t.index) == usable.sum()
    got = {k.tobytes(): c for k, c in zip(t.index.keys, t.index.ab)}
    want = {k.tobytes(): c for k, c in zip(e["keys"][usable], e["ab"][usable])}
    assert got.keys() == want.keys()
    for k in want:
        np.testing.assert_array_equal(got[k], want[k])
    # a table rebuilt from the entries (as load does) has the same index
    again = ColorTable.from_entries(e, w, levels, FitSettings(policy="mark"))
    np.testing.assert_array_equal(np.sort(again.index.projections), np.sort(t.index.projections))
    assert len(again) == len(t) and again.finalized
