"""Imported last by the worker fork server (kpipe.runtime.start_method.PRELOAD), after everything workers use.

Importing it collects garbage once and freezes what is left: the imported modules' objects move to the
collector's permanent generation, so no collection in a forked worker writes to them (a collection touches
every tracked object's header) and their pages stay shared between the server and every worker. A worker's
own start-up state is frozen again in the worker (kpipe.runtime.worker.process.settle_heap).

It is meant for the fork server only: in any other process importing it merely freezes that process's heap.
"""

from __future__ import annotations

import gc

gc.collect()
gc.freeze()
