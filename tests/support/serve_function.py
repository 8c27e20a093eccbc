"""Runs the real functions-framework CLI with the collector's clock read from a shift file.

`python -m tests.support.serve_function --target=fetch_book --source=... --port=N`
"""

import os
import sys
from pathlib import Path

from functions_framework._cli import _cli

from bitso_collector import app
from tests.support.clock_control import SHIFT_FILE_ENV, FileShiftedClock

if __name__ == "__main__":
    app.clock = FileShiftedClock(Path(os.environ[SHIFT_FILE_ENV]))
    sys.exit(_cli())
