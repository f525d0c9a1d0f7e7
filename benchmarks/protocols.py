"""The development data protocols of ../shared/data/README.md (benchmarks only; tests never need that folder)."""

import glob
import os

DATA = os.environ.get("HYPERCHROMA_DATA", os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data"))

# Stereo pairs and near duplicates in photos/: each group stays on one side of the split.
PHOTO_GROUPS = [("aloeL", "aloeR"), ("left", "right"), ("rubberwhale1", "rubberwhale2"), ("graf1", "graf3"),
                ("ela_modified", "ela_original"), ("opencv-logo", "opencv-logo-white")]


def keyframes(name):
    """Keyframe film protocol: 8 evenly spread keyframes train; every 3rd of the others test."""
    fs = sorted(glob.glob(os.path.join(DATA, name, "*.jpg")))
    if not fs:
        raise SystemExit(f"no frames in {os.path.join(DATA, name)} (set HYPERCHROMA_DATA to shared/data)")
    step = len(fs) // 8
    key = fs[step // 2::step][:8]
    test = [f for i, f in enumerate(fs) if f not in key and i % 3 == 0]
    return key, test


def photos():
    """Cross-image protocol: every 4th photo (sorted by name) tests, the rest train; pairs kept together."""
    fs = sorted(glob.glob(os.path.join(DATA, "photos", "*")))
    stem = lambda f: os.path.splitext(os.path.basename(f))[0]  # noqa: E731
    test = {f for i, f in enumerate(fs) if i % 4 == 0}
    for group in PHOTO_GROUPS:
        members = [f for f in fs if stem(f) in group]
        if any(f in test for f in members):
            test.update(members)
    return [f for f in fs if f not in test], sorted(test)


def cross(fit_on, test_on):
    """Unrelated images: fit on one protocol's training images, colorize another protocol's test images."""
    return lambda: (PROTOCOLS[fit_on]()[0], PROTOCOLS[test_on]()[1])


PROTOCOLS = {"film-vtest": lambda: keyframes("film-vtest"), "film-tree": lambda: keyframes("film-tree"),
             "photos": photos}
#: The cross-set runs of the "unrelated images" bar: photos -> films, one film -> the other, films -> photos.
CROSS = {f"{a}>{b}": cross(a, b) for a, b in [("photos", "film-vtest"), ("photos", "film-tree"),
                                              ("film-vtest", "film-tree"), ("film-tree", "film-vtest"),
                                              ("film-vtest", "photos"), ("film-tree", "photos")]}
PROTOCOLS.update(CROSS)


def film_720(keys=1):
    """The latency protocol of issue 12: film-vtest frames resized to 720x528 (bilinear), a model fit on
    ``keys`` keyframe(s) (1 -> about 40% of the test frames' keys miss, like the film we keep aside), the
    test frames' gray versions. Returns (train RGB frames, test gray frames), uint8 arrays."""
    import numpy as np
    from PIL import Image

    from hyperchroma.images import load_image, luma

    def rs(a):
        return np.asarray(Image.fromarray(a).resize((720, 528), Image.Resampling.BILINEAR))

    train, test = keyframes("film-vtest")
    return [rs(load_image(f)) for f in train[::max(1, 8 // keys)][:keys]], [luma(rs(load_image(f))) for f in test]


def film_720_sequence(start=300, count=40):
    """``count`` consecutive frames of video/vtest.avi from ``start``, resized to 720x528 (bilinear), gray: the
    film_720 protocol's frames as a film goes through ``colorize`` (one after the other)."""
    import av
    import numpy as np
    from PIL import Image

    from hyperchroma.images import luma

    out = []
    with av.open(os.path.join(DATA, "video", "vtest.avi")) as c:
        for i, fr in enumerate(c.decode(video=0)):
            if i >= start + count:
                break
            if i >= start:
                rgb = Image.fromarray(fr.to_ndarray(format="rgb24")).resize((720, 528), Image.Resampling.BILINEAR)
                out.append(luma(np.asarray(rgb)))
    return out
