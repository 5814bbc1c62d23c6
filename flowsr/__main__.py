"""``python -m flowsr``: the ``flowsr`` command (:func:`flowsr.cli.main`)."""

import sys

from flowsr.cli import main

sys.exit(main())
