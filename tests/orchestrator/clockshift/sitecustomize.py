"""Shifts the wall clock of every Python process of the clock tests (put on PYTHONPATH).

``$KDSWEEP_TEST_CLOCK`` names a file holding a number of seconds: ``time.time`` and
``time.time_ns`` of each process read the real clock plus that number (re-read at every call,
so a test steps the clock mid-sweep by rewriting the file, as an NTP step would) plus this
process's own skew: ``+KDSWEEP_TEST_SKEW_S`` seconds for an odd process id and minus it for an
even one, as on nodes whose clocks disagree. The monotonic clocks stay true, as they do under
an NTP step.
"""

import os
import time

_path = os.environ.get("KDSWEEP_TEST_CLOCK")
if _path:
    _real_time, _real_ns = time.time, time.time_ns
    _skew_s = float(os.environ.get("KDSWEEP_TEST_SKEW_S", "0"))

    def _offset() -> float:
        # The process id at the call: forkserver children inherit this module from their parent.
        skew = _skew_s if os.getpid() % 2 else -_skew_s
        try:
            with open(_path) as fh:
                return float(fh.read() or 0) + skew
        except (OSError, ValueError):
            return skew

    time.time = lambda: _real_time() + _offset()
    time.time_ns = lambda: _real_ns() + int(_offset() * 1e9)
