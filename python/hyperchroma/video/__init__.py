"""Film colorization: a video colored from a few color keyframes, streaming, with its audio kept.

>>> from hyperchroma.video import colorize_video
>>> stats = colorize_video(model, "old.mp4", "color.mp4", keyframes=keys)
"""

from .film import FilmOptions, colorize_frames
from .io import VideoError, colorize_video

__all__ = ["FilmOptions", "VideoError", "colorize_frames", "colorize_video"]
