"""A worker target for tests/unit/test_start_method.py: writes the modules its process has loaded, one per line,
to $KPIPE_TEST_MODULES_OUT, and exits. Light on purpose (it imports only what every worker has), so that what
it writes is what a worker process holds when its own code starts."""

from __future__ import annotations

import os
import sys
from typing import Any


def record_modules(start: Any, channel: Any) -> int:
    with open(os.environ["KPIPE_TEST_MODULES_OUT"], "w") as out:
        out.write("\n".join(sorted(sys.modules)))
    return 0
