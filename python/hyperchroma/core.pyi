"""Type stub: hyperchroma.core re-exports the C++ extension hyperchroma._core."""

from ._core import *  # noqa: F401,F403
