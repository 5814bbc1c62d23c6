"""``python -m flowsr.bench`` (and the per-measurement worker processes it starts)."""

import sys

from flowsr.bench.command import main

if __name__ == "__main__":
    sys.exit(main())
