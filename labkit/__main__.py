"""``python -m labkit``: the command line (``labkit.cli``)."""

import sys

from labkit.cli import main

sys.exit(main())
