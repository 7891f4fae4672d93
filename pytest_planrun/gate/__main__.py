"""``python -m pytest_planrun.gate STEP``: one step of the safe-merge gate.

PYTEST_DONT_REWRITE
"""

import sys

from . import main

sys.exit(main())
