"""FitSettings / ColorizeSettings: types, bounds, defaults written once, overrides without refitting."""

import numpy as np
import pytest

import hyperchroma as hc
from hyperchroma.demo import demo_frames


def test_settings_types(tmp_path):
    train = demo_frames()[0][:1]
    m = hc.fit(train, levels=np.int64(3), max_distance=np.float32(5), exact=np.bool_(False))
    assert type(m.settings.levels) is int and type(m.settings.max_distance) is float
    m.save(tmp_path / "np.hyc")  # JSON-able
    for bad, err in ((dict(tolerance="12"), TypeError), (dict(max_distance="5"), TypeError),
                     (dict(exact="no"), TypeError), (dict(one_step=1), TypeError),
                     (dict(tolerance=float("inf")), ValueError),
                     (dict(levels=3.0), TypeError), (dict(max_distance=-1), ValueError)):
        with pytest.raises(err):
            hc.fit(train, **bad)


def test_defaults_are_written_once():
    import inspect

    from hyperchroma import ColorizeSettings, FitSettings

    # fit()'s explicit defaults are the FitSettings defaults; the rest come from the dataclasses themselves
    sig = inspect.signature(hc.fit)
    for name in ("size", "levels", "policy"):
        assert sig.parameters[name].default == getattr(FitSettings(), name)
    m = hc.fit(demo_frames()[0][:1])
    assert m.fit_settings == FitSettings() and m.colorize_settings == ColorizeSettings()


@pytest.mark.parametrize("field,value", [("size", 100_000), ("size", 8), ("median_size", 201), ("median_size", 4),
                                         ("max_scan", 0), ("seed_radius", 10**9), ("levels", 300),
                                         ("samples_per_image", 0), ("vote_bin", 0.0)])
def test_out_of_range_settings_are_refused(field, value):
    from hyperchroma.settings import split

    with pytest.raises(ValueError, match=field):
        split({field: value})


def test_colorize_settings_change_without_refitting(model, frames):
    test = frames[1][0]
    m5 = model.with_settings(median_size=5)
    assert m5.colorize_settings.median_size == 5 and model.colorize_settings.median_size == 3
    assert m5.color_table is model.color_table and m5.classifier is model.classifier  # shared, not refit
    np.testing.assert_array_equal(m5.colorize(test), model.colorize(test, median_size=5))
    assert not np.array_equal(model.colorize(test, median_size=1), model.colorize(test))
    with pytest.raises(TypeError, match="unknown"):
        model.with_settings(levels=4)  # fixed by fitting
    with pytest.raises(TypeError, match="unknown"):
        model.colorize(test, median=5)
    with pytest.raises(ValueError, match="median_size"):
        model.colorize(test, median_size=4)


def test_settings_view_reads_both_kinds(model):
    s = model.settings
    assert s.levels == model.fit_settings.levels and s.median_size == model.colorize_settings.median_size
    with pytest.raises(AttributeError):
        s.no_such_field
