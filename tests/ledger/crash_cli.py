"""``tether`` with a crash hook installed through the fault seam (crash tests only).

``CRASH_AT`` names a fault point (``tether.graphs.faults.FAULT_POINTS``) and, if set,
``CRASH_TOOL`` the tool: when the workflow reaches it, this process kills itself with SIGKILL.
"""

from __future__ import annotations

import os
import signal
import sys

from tether.cli import main
from tether.graphs.faults import install_fault_hook


def _crash(point: str, tool: str) -> None:
    if os.environ.get("CRASH_AT") == point and os.environ.get("CRASH_TOOL", tool) == tool:
        os.kill(os.getpid(), signal.SIGKILL)


if __name__ == "__main__":
    install_fault_hook(_crash)
    sys.exit(main())
