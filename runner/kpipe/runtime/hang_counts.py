"""How often a handler hung on an event, remembered across worker restarts: the hang counts.

A synchronous handler that runs longer than `on_error.timeout_ms` cannot be interrupted, so its worker reports
the event and exits for a restart (kpipe.runtime.protocol.WORKER_EXIT_HUNG). The restarted worker (or, after
the rebalance, another instance of the group) reads the same event again; once the handler has hung on it
HANG_LIMIT times, it is no longer handed to the handler but treated as failed (dead-lettered, skipped or
stopping the group, as `on_error.action` says).

The counts live in the run's state directory (the supervisor creates one per `kpipe run`), one append-only file
per group with one JSON line per hang: appends of a short line are atomic, so the instances of a group can
record concurrently, and a worker reads the file when it starts and when it is assigned partitions, which is
when a hung event can reach it. Without a state directory (a worker run in-process) the counts stay in memory.
Counts are per `kpipe run`: a new run starts from zero.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from pathlib import Path

# Hangs on one event before it is no longer given to the handler.
HANG_LIMIT = 2

EventId = tuple[str, int, int]  # (topic, partition, offset)


class HangCounts:
    def __init__(self, state_dir: str | None, group: str):
        self.group = group
        digest = hashlib.sha256(group.encode()).hexdigest()[:16]
        self._path = Path(state_dir) / f"hangs-{digest}.jsonl" if state_dir else None
        self._memory: Counter[EventId] = Counter()

    def record(self, event: EventId) -> int:
        """Count one more hang on `event`; returns its hang count so far (this one included)."""
        if self._path is None:
            self._memory[event] += 1
            return self._memory[event]
        # Led by a newline too, so that a line torn by a killed writer cannot swallow this one.
        line = b"\n" + json.dumps([event[0], event[1], event[2]], separators=(",", ":")).encode() + b"\n"
        fd = os.open(self._path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)
        return self.counts()[event]

    def counts(self) -> Counter[EventId]:
        if self._path is None:
            return Counter(self._memory)
        counts: Counter[EventId] = Counter()
        try:
            text = self._path.read_text()
        except (FileNotFoundError, NotADirectoryError):
            return counts
        for line in text.splitlines():
            if not line:
                continue
            try:
                topic, partition, offset = json.loads(line)
                counts[(str(topic), int(partition), int(offset))] += 1
            except (ValueError, TypeError):
                continue  # a torn line (a worker killed mid-write): ignore it
        return counts

    def exhausted(self) -> dict[EventId, int]:
        """The events the handler hung on HANG_LIMIT times or more (with their counts): not to be handed to it
        again."""
        return {event: n for event, n in self.counts().items() if n >= HANG_LIMIT}
