"""``python -m tna.bench [options]``: the same as ``tna bench [options]``."""

import sys

from tna.bench import main

sys.exit(main(sys.argv[1:]))
