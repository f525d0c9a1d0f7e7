"""A third benchmark film, built from ../shared/data: many shots, most of them without a keyframe.

The two development videos are one shot each (vtest) or nearly (tree). Real films are montages: cuts every few
seconds, so with 8 keyframes evenly spread most shots have none, and the engine must fall back on the table
(and on motion from the table's colors) there. ``montage`` is 10 shots at 720x528 (the speed bar's size, above
twice the model size, so the keyframe detail path runs): pieces of vtest.avi and tree.avi (real motion, their
own codecs' noise) and slow pans and zooms over photos/ (camera motion only), then one H.264 round trip (crf 20,
yuv420p, as a distributed film would be). Deterministic: the same frames every run.
"""

import os
import tempfile

import av
import cv2
import numpy as np
from PIL import Image

from protocols import DATA

W, H = 720, 528

#: (source, first, count) for video pieces; (photo, count, (x0, y0, zoom0), (x1, y1, zoom1)) for camera moves:
#: x, y the window's centre as a fraction of the photo, zoom the window's width as a fraction of the photo's.
SHOTS = [
    ("vtest", 0, 60),
    ("baboon.jpg", 30, (0.45, 0.5, 0.9), (0.55, 0.45, 0.7)),
    ("tree", 0, 28),
    ("fruits.jpg", 30, (0.4, 0.5, 0.8), (0.6, 0.5, 0.8)),
    ("starry_night.jpg", 30, (0.5, 0.5, 0.6), (0.5, 0.5, 0.9)),
    ("vtest", 400, 50),
    ("building.jpg", 30, (0.35, 0.5, 0.6), (0.65, 0.5, 0.6)),
    ("messi5.jpg", 30, (0.5, 0.5, 0.95), (0.45, 0.55, 0.75)),
    ("tree", 28, 40),
    ("squirrel_cls.jpg", 30, (0.5, 0.45, 0.7), (0.5, 0.55, 0.85)),
]


def _video(name, first, count):
    out = []
    with av.open(os.path.join(DATA, "video", name + ".avi")) as c:
        for i, f in enumerate(c.decode(c.streams.video[0])):
            if i >= first + count:
                break
            if i >= first:
                out.append(cv2.resize(f.to_ndarray(format="rgb24"), (W, H), interpolation=cv2.INTER_AREA
                                      if f.width >= W else cv2.INTER_CUBIC))
    return out


def _camera(photo, count, start, end):
    img = np.asarray(Image.open(os.path.join(DATA, "photos", photo)).convert("RGB"))
    ph, pw = img.shape[:2]
    out = []
    for i in range(count):
        s = i / max(1, count - 1)
        cx, cy, z = (a + (b - a) * s for a, b in zip(start, end))
        ww = z * pw
        wh = ww * H / W
        if wh > ph:  # keep the window inside the photo
            wh, ww = ph, ph * W / H
        x0 = min(max(cx * pw - ww / 2, 0), pw - ww)
        y0 = min(max(cy * ph - wh / 2, 0), ph - wh)
        # the window (x0, y0, ww, wh) mapped onto the output frame, sub-pixel exact
        m = np.float32([[W / ww, 0, -x0 * W / ww], [0, H / wh, -y0 * H / wh]])
        out.append(cv2.warpAffine(img, m, (W, H), flags=cv2.INTER_AREA if ww > W else cv2.INTER_CUBIC,
                                  borderMode=cv2.BORDER_REFLECT))
    return out


def montage():
    """The montage's RGB frames (list of uint8 (528, 720, 3)), after an H.264 round trip."""
    frames = []
    for shot in SHOTS:
        frames += _video(*shot) if shot[0] in ("vtest", "tree") else _camera(*shot)
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "montage.mp4")
        with av.open(path, "w") as dst:
            s = dst.add_stream("libx264", rate=25, options={"crf": "20"})
            s.width, s.height, s.pix_fmt = W, H, "yuv420p"
            for f in frames:
                for p in s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                    dst.mux(p)
            for p in s.encode():
                dst.mux(p)
        with av.open(path) as c:
            return [f.to_ndarray(format="rgb24") for f in c.decode(c.streams.video[0])]


#: The clean film: camera moves over photos and one shot of an object crossing a moving background, kept
#: lossless (no codec round trip). A filmed truth's frame-to-frame color change is mostly its codec's chroma
#: noise (tree.avi's still pixels change by 1.5 ab units a frame), which no colorization of the gray frames
#: reproduces; here the truth changes only as the picture moves, so the warp error can be held against it.
CLEAN_SHOTS = [
    ("baboon.jpg", 30, (0.45, 0.5, 0.9), (0.55, 0.45, 0.7)),
    ("fruits.jpg", 30, (0.4, 0.5, 0.8), (0.6, 0.5, 0.8)),
    ("starry_night.jpg", 30, (0.5, 0.5, 0.6), (0.5, 0.5, 0.9)),
    ("building.jpg", 30, (0.35, 0.5, 0.6), (0.65, 0.5, 0.6)),
    ("messi5.jpg", 30, (0.5, 0.5, 0.95), (0.45, 0.55, 0.75)),
    ("squirrel_cls.jpg", 30, (0.5, 0.45, 0.7), (0.5, 0.55, 0.85)),
]


def _crossing(count=40):
    """A window cut from smarties.png (240x176) crossing a slow pan over home.jpg, left to right and downwards,
    about 18 pixels a frame: occlusion and disocclusion at its edges, as with a filmed object."""
    background = _camera("home.jpg", count, (0.45, 0.5, 0.8), (0.55, 0.5, 0.8))
    fruit = np.asarray(Image.open(os.path.join(DATA, "photos", "smarties.png")).convert("RGB"))
    sh, sw = 176, 240
    fy, fx = (fruit.shape[0] - sh) // 2, (fruit.shape[1] - sw) // 2
    sprite = fruit[fy:fy + sh, fx:fx + sw]
    out = []
    for i, bg in enumerate(background):
        s = i / max(1, count - 1)
        x, y = -sw / 2 + s * W, 60 + s * 200
        m = np.float32([[1, 0, x], [0, 1, y]])  # sub-pixel positions: the sprite resampled as a camera would
        layer = cv2.warpAffine(sprite, m, (W, H), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_CONSTANT)
        alpha = cv2.warpAffine(np.ones((sh, sw), np.float32), m, (W, H), flags=cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_CONSTANT)[..., None]
        out.append(np.clip(bg * (1 - alpha) + layer * alpha + 0.5, 0, 255).astype(np.uint8))
    return out


def clean():
    """The clean film's RGB frames (list of uint8 (528, 720, 3)), 220 frames in 7 shots, never encoded."""
    frames = []
    for shot in CLEAN_SHOTS[:3]:
        frames += _camera(*shot)
    frames += _crossing()
    for shot in CLEAN_SHOTS[3:]:
        frames += _camera(*shot)
    return frames


#: The transitions film: the clean film's camera moves joined by the transitions of edited film instead of cuts
#: (kind, frames): a dissolve overlaps the two shots' ends, blending the color frames; a fade darkens the end of
#: one shot to black and brings the next up from black (RGB values scaled, as an editor or a printer's light
#: does). Lossless, so the truth's colors in a transition are the blend or the dimmed colors themselves.
TRANSITIONS = [("dissolve", 12), ("fade", 10), ("cut", 0), ("dissolve", 16), ("fade", 8)]


def _faded(frames, gains):
    return [np.clip(f.astype(np.float32) * g + 0.5, 0, 255).astype(np.uint8) for f, g in zip(frames, gains)]


def transitions():
    """The transitions film's RGB frames (list of uint8 (528, 720, 3)), 6 shots of 36 frames joined by
    TRANSITIONS (dissolves overlap, so 188 frames), never encoded."""
    shots = [_camera(photo, 36, a, b) for photo, _, a, b in CLEAN_SHOTS]
    frames = list(shots[0])
    for (kind, n), shot in zip(TRANSITIONS, shots[1:]):
        shot = list(shot)
        if kind == "dissolve":
            tail, frames = frames[-n:], frames[:-n]
            for i in range(n):
                s = (i + 1) / (n + 1)
                frames.append(np.clip(tail[i] * (1 - s) + shot[i] * s + 0.5, 0, 255).astype(np.uint8))
            frames += shot[n:]
        elif kind == "fade":
            # down to 1 / (n + 1) and up from it (a black frame would make its PSNR infinite)
            frames[-n:] = _faded(frames[-n:], [1 - (i + 1) / (n + 1) for i in range(n)])
            frames += _faded(shot[:n], [(i + 1) / (n + 1) for i in range(n)]) + shot[n:]
        else:
            frames += shot
    return frames


#: The returns film: shot and reverse shot, as in a dialogue. Two slow camera moves run on in real time and the
#: film cuts between them (each shot resumes where its camera has got to), with a one-frame insert of a third
#: picture once. (photo, start, end) per camera over the film's 184 frames; (camera, frames) per shot.
RETURN_CAMERAS = [("baboon.jpg", (0.42, 0.5, 0.8), (0.58, 0.45, 0.65)),
                  ("fruits.jpg", (0.35, 0.5, 0.75), (0.65, 0.5, 0.7)),
                  ("starry_night.jpg", (0.5, 0.5, 0.7), (0.5, 0.5, 0.7))]
RETURN_SHOTS = [(0, 24), (1, 16), (0, 24), (1, 16), (0, 24), (2, 1), (0, 23), (1, 16), (0, 24), (1, 16)]


def returns():
    """The returns film's RGB frames (list of uint8 (528, 720, 3)), 184 frames in 10 shots, never encoded."""
    n = sum(k for _, k in RETURN_SHOTS)
    frames, t = [], 0
    for cam, k in RETURN_SHOTS:
        photo, a, b = RETURN_CAMERAS[cam]
        s0, s1 = (t / (n - 1), (t + k - 1) / (n - 1))
        lerp = [tuple(x + (y - x) * s for x, y in zip(a, b)) for s in (s0, s1)]
        frames += _camera(photo, k, lerp[0], lerp[1]) if k > 1 else _camera(photo, 1, lerp[0], lerp[0])
        t += k
    return frames
