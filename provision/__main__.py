"""``python -m provision`` is ``coralpi``."""

import sys

from provision.cli import main

sys.exit(main())
