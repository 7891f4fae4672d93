"""``python -m pytest_planrun.gate STEP``: one step of the safe-merge gate."""

import sys

from . import main

sys.exit(main())
