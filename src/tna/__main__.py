"""``python -m tna``: the same as the ``tna`` console script."""

import sys

from tna.cli import main

sys.exit(main())
