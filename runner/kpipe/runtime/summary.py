"""What `kpipe run` and `kpipe dev` say a group did: per-group totals, and the lines that report them. Pure.

    group_totals(views)                per group, from the supervisor's snapshot: events handled,
                                       dead-lettered, skipped; workers running; restarts, partitions, lag
    rate(now, before, elapsed)         events done per second between two totals
    summary_lines(totals, previous, elapsed, final=False)
                                       `kpipe run`'s line per group every so often, and the final line on stop
                                       (`kpipe dev` ends with the same final lines)
    format_rate(events_per_second)     "3.5/s", "2.0/min" for a slow group, "0/s"

The counts are the workers' own (WorkerStatus), plus what earlier processes of a restarted worker had reported
(WorkerView.counters), so they never go backwards.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from kpipe.runtime.supervisor import WorkerView


@dataclass
class GroupTotals:
    group: str
    instances: int = 0
    running: int = 0
    joining: int = 0  # of the running ones: still waiting for the group's assignment
    handled: int = 0
    dead_lettered: int = 0
    skipped: int = 0
    restarts: int = 0
    last_commit_at: float | None = None  # time.time() of the latest commit of any instance
    partitions: list[tuple[str, int]] = field(default_factory=list)  # held by running instances
    # Events behind the log end over the partitions running instances hold (librdkafka statistics, only
    # with metrics or `kpipe dev`); None until one reported.
    lag: int | None = None

    @property
    def done(self) -> int:
        return self.handled + self.dead_lettered + self.skipped


def group_totals(views: Mapping[tuple[str, int], WorkerView]) -> dict[str, GroupTotals]:
    """Per group, in name order, the totals of its instances (the supervisor's snapshot())."""
    out: dict[str, GroupTotals] = {}
    for (group, _instance), view in sorted(views.items()):
        t = out.setdefault(group, GroupTotals(group))
        t.instances += 1
        t.restarts += view.restarts
        c = view.counters
        t.handled += c.handled
        t.dead_lettered += c.dead_lettered
        t.skipped += c.skipped
        status = view.status
        if status is None:
            continue
        if status.last_commit_at and (t.last_commit_at is None or status.last_commit_at > t.last_commit_at):
            t.last_commit_at = status.last_commit_at
        if view.state != "running":
            continue  # a worker that is not up holds nothing, whatever its last status said
        t.running += 1
        t.joining += int(status.joining)
        t.partitions += status.assigned
        if status.lag:
            held = set(status.assigned)
            t.lag = (t.lag or 0) + sum(n for topic, p, n in status.lag if (topic, p) in held)
    return dict(sorted(out.items()))


def rate(now: GroupTotals, before: GroupTotals | None, elapsed: float) -> float:
    """Events done (handled, dead-lettered or skipped) per second since `before` (None: since the start)."""
    if elapsed <= 0:
        return 0.0
    return max(0.0, (now.done - (before.done if before is not None else 0)) / elapsed)


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
        per_second = rate(t, previous.get(name), elapsed)
        text = (
            f"group '{name}': handled {t.handled} ({format_rate(per_second)}), "
            f"dead-lettered {t.dead_lettered}, skipped {t.skipped}"
        )
        if final:
            text = f"final: {text} in {_duration(elapsed)}"
        else:
            text += f"; {t.running - t.joining}/{t.instances} worker{'s' if t.instances != 1 else ''} running"
            if t.joining:
                text += f", {t.joining} joining the group"
            if t.lag is not None:
                text += f", lag {t.lag}"
        lines.append(text)
    return lines


def format_rate(per_second: float) -> str:
    """Events per second, per minute below 0.1/s so a slow group does not read as stopped ("0.0/s")."""
    if per_second <= 0:
        return "0/s"
    if per_second < 0.1:
        per_minute = per_second * 60
        return f"{per_minute:.1f}/min" if per_minute >= 0.1 else "<0.1/min"
    return f"{per_second:.1f}/s" if per_second < 100 else f"{per_second:.0f}/s"


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"
