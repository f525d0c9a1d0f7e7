"""``python -m hyperchroma``: the command line (see :mod:`hyperchroma.cli`)."""

import sys

from .cli import main

sys.exit(main())
