"""``python -m converter``: the same entry point as the ``converter`` console script."""

import sys

from converter.cli import main

sys.exit(main())
