"""`python -m livecut`."""

import sys

from livecut.cli import main

sys.exit(main())
