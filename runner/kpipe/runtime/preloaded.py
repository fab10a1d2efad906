"""Imported last by the worker fork server (kpipe.runtime.start_method.PRELOAD), after everything workers use.

Importing it collects garbage once and freezes what is left: the imported modules' objects move to the
collector's permanent generation, so no collection in a forked worker writes to them (a collection touches
every tracked object's header) and their pages stay shared between the server and every worker. A worker's
own start-up state is frozen again in the worker (kpipe.runtime.worker.process.settle_heap).

It also makes the fork server ignore SIGHUP and SIGTERM: it ends by itself once the supervisor and every
worker have closed its pipe, and a closed terminal or a stop sent to the whole process group must not end it
first, while the workers it reports the exits of are still committing. And it blocks SIGINT, SIGTERM and
SIGHUP, so that a forked worker starts with them blocked: one that arrives between the fork and the worker's
own code (multiprocessing's start-up, unpickling its WorkerStart) stays pending instead of being lost (an
ignored SIGTERM) or ending the worker as a crash (a KeyboardInterrupt out of multiprocessing's start-up, exit
code 1). Each worker restores the three signals and unblocks them (kpipe.runtime.supervisor's worker entry),
and a stop sent meanwhile is delivered then. A blocked signal is kept pending even where it is ignored, so the
server itself never acts on them.

It is meant for the fork server only: imported anywhere else it would do the same to that process.
"""

from __future__ import annotations

import gc
import signal

gc.collect()
gc.freeze()
for _signum in (signal.SIGHUP, signal.SIGTERM):
    signal.signal(_signum, signal.SIG_IGN)
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM, signal.SIGHUP})
