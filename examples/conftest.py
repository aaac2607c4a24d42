"""Example tests share the process helpers of ``tests/helpers.py`` (``from helpers import``).

``tests/conftest.py`` puts ``tests/`` on the import path only when a test under
``tests/`` is collected; this does the same for ``pytest examples`` on its own.
"""

from __future__ import annotations

import sys
from pathlib import Path

_TESTS = str(Path(__file__).resolve().parents[1] / "tests")
if _TESTS not in sys.path:
    sys.path.insert(0, _TESTS)
