"""``python -m journal.cli``: the ``journal`` command without its console script."""

import sys

from journal.cli import main

sys.exit(main())
