"""``python -m steerlab.cli``."""

import sys

from steerlab.cli import main

sys.exit(main())
