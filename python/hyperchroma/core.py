"""The C++ core, re-exported from the private extension module ``hyperchroma._core``.

Kernels (all take and return numpy arrays; compute runs with the GIL released):

- :func:`upsample_bilinear`, :func:`project_upsample`, :func:`hypercolumns`, :func:`hypercolumn_keys` (fused), :func:`pack_keys`,
  :func:`unpack_keys`, :func:`key_words`: hypercolumn keys.
- :class:`Table`: open-addressing hash table from packed keys to Lab ab colors with a conflict policy.
- :class:`SortedIndex`: entries sorted by a weighted-sum projection; nearest key by binary search.
- :func:`median_filter`: exact median filter with replicated edges.
- :func:`pwl_conv`: a 1x1 conv of a one-channel map + ReLU + KxK conv in one pass, :func:`pool_conv`: a 2x2
  max pool + a few-channel KxK conv (the classifier's first layers on the CPU, see
  :mod:`hyperchroma.classifier.fused`).
- :func:`compose_luma` (exact), :func:`compose_luma_grid` and :func:`upsample_compose` (ab on a 1-unit grid, from a
  table filled as cells are met; the latter fused with the bilinear upsampling): gray + ab -> RGB that keeps the gray.
- :func:`upsample_detail`: a film frame's full-resolution ab, model-size ab plus keyframe detail sampled along the
  motion (``hyperchroma.video.film``).
"""

from ._core import *  # noqa: F401,F403
