"""What `kpipe run` says it did: one line per consumer group every so often, and a final one on stop. Pure.

    GroupTotals.of(views)              per group: events handled, dead-lettered, skipped; workers running
    summary_lines(totals, previous, elapsed, final=False)

The counts are the workers' own (WorkerStatus), plus what earlier processes of a restarted worker had reported.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass


@dataclass
class GroupTotals:
    group: str
    handled: int = 0
    dead_lettered: int = 0
    skipped: int = 0
    running: int = 0
    instances: int = 0

    @property
    def done(self) -> int:
        return self.handled + self.dead_lettered + self.skipped

    @staticmethod
    def of(rows: Iterable[tuple[str, bool, int, int, int]]) -> dict[str, GroupTotals]:
        """rows: (group, running, handled, dead_lettered, skipped) per worker slot."""
        out: dict[str, GroupTotals] = {}
        for group, running, handled, dead_lettered, skipped in rows:
            t = out.setdefault(group, GroupTotals(group))
            t.instances += 1
            t.running += int(running)
            t.handled += handled
            t.dead_lettered += dead_lettered
            t.skipped += skipped
        return out


def summary_lines(
    totals: Mapping[str, GroupTotals],
    previous: Mapping[str, GroupTotals],
    elapsed: float,
    *,
    final: bool = False,
) -> list[str]:
    """`group 'g': handled 120 (4.0/s), dead-lettered 1, skipped 0; 2/2 workers running`, one per group.

    The rate is over `elapsed` seconds since `previous` (for the final line: the whole run)."""
    lines = []
    for name, t in sorted(totals.items()):
        before = previous.get(name)
        done_before = before.done if before is not None else 0
        rate = (t.done - done_before) / elapsed if elapsed > 0 else 0.0
        text = (
            f"group '{name}': handled {t.handled} ({_rate(rate)}/s), dead-lettered {t.dead_lettered}, "
            f"skipped {t.skipped}"
        )
        if final:
            text = f"final: {text} in {_duration(elapsed)}"
        else:
            text += f"; {t.running}/{t.instances} worker{'s' if t.instances != 1 else ''} running"
        lines.append(text)
    return lines


def _rate(rate: float) -> str:
    return f"{rate:.1f}" if rate < 100 else f"{rate:.0f}"


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"
