"""An evaluator whose worker dies on one point: how the engines' fault handling is tested with the
real worker code around it (spawned local workers and Ray actors import this module by name)."""
from __future__ import annotations

import os
import signal

from dlavm.dse.evaluate import Evaluator

#: the ctx value whose point kills its worker
DEADLY_CTX = 24


class CrashingEvaluator(Evaluator):
    """:class:`Evaluator`, except that the worker process is killed (SIGKILL, as the kernel's OOM killer
    does) when it is given a point with ``ctx == DEADLY_CTX``."""

    def __call__(self, point):
        if point.ctx == DEADLY_CTX:
            os.kill(os.getpid(), signal.SIGKILL)
        return super().__call__(point)


#: the hbm_channels value whose point never finishes
HANGING_CHANNELS = 3


class HangingEvaluator(Evaluator):
    """:class:`Evaluator`, except that a point with ``hbm_channels == HANGING_CHANNELS`` never finishes (a
    deadlock, a runaway loop): what ``--point-timeout`` is for."""

    def __call__(self, point):
        if point.target_fields.get("hbm_channels") == HANGING_CHANNELS:
            import time
            while True:
                time.sleep(1)
        return super().__call__(point)
