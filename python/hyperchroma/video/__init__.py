"""Film colorization: a video colored from a few color keyframes, streaming, with its audio kept.

>>> import hyperchroma as hc
>>> from hyperchroma.video import colorize_video, colorize_frames
>>> model = hc.fit(keys)                                   # keys: uint8 (H,W,3) RGB color keyframes
>>> stats = colorize_video(model, "old.mp4", "color.mp4", keyframes=keys)
>>> for rgb in colorize_frames(model, gray_frames, keyframes=keys): ...

Modules: ``io`` (PyAV decode/encode, audio, temp file), ``film`` (the streaming engine and its one adapter to
the model), ``propagate`` (DIS flow, warps, reliability), ``shots`` (cuts), ``keyframes`` (locating them).
"""

from .film import FilmOptions, colorize_frames, locate_keyframes
from .io import VideoError, colorize_video

__all__ = ["FilmOptions", "VideoError", "colorize_frames", "colorize_video", "locate_keyframes"]
