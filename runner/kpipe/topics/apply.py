"""Reading the live state for a plan, and executing a plan through the cluster boundary.

    read_plan(cluster, desired, prune=, force=) -> Plan        describe the cluster, then plan.make_plan
    apply_plan(plan, cluster, desired) -> ApplyReport           batched requests, one per kind of change

Creations go in one CreateTopics request, config changes in one IncrementalAlterConfigs, partition increases in
one CreatePartitions, deletions in one DeleteTopics. A topic someone else created meanwhile counts as done and
is then checked against its declaration. Every change gets its own result; nothing failed is reported as done.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from rich.console import Console

from kpipe.compilation.compiled import TopicSettings
from kpipe.errors import ClusterError
from kpipe.topics.cluster import ClusterAPI, TopicResult
from kpipe.topics.plan import (
    Change,
    ClusterState,
    CreateTopic,
    DeleteTopic,
    IncreasePartitions,
    Plan,
    UpdateConfig,
    make_plan,
)

# From this many changes of one kind on, apply shows progress (a bar on a terminal, a line per step otherwise).
PROGRESS_THRESHOLD = 20


def read_plan(
    cluster: ClusterAPI, desired: Sequence[TopicSettings], *, prune: bool = False, force: bool = False
) -> Plan:
    declared = {spec.name for spec in desired}
    live = cluster.describe(config_for=declared)
    if prune:
        undeclared = [n for n in live.topics if n not in declared]
        live = ClusterState(live.topics, committed_groups=cluster.committed_groups(undeclared))
    return make_plan(desired, live, prune=prune, force=force)


@dataclass(frozen=True)
class ChangeResult:
    change: Change
    ok: bool
    note: str = ""
    error: ClusterError | None = None
    # A create that found the topic already there (another apply won the race): done, but not "created".
    already_existed: bool = False

    def line(self) -> str:
        if self.ok and self.already_existed:
            return f"topic {self.change.topic} already existed (created meanwhile by someone else)"
        verb = {
            CreateTopic: "created topic",
            UpdateConfig: "updated config of topic",
            IncreasePartitions: "increased partitions of topic",
            DeleteTopic: "deleted topic",
        }.get(type(self.change), self.change.kind)
        if self.ok:
            return f"{verb} {self.change.topic}" + (f" ({self.note})" if self.note else "")
        return f"failed: {self.change.summary()}: {self.error}"


@dataclass
class ApplyReport:
    results: list[ChangeResult] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def failed(self) -> list[ChangeResult]:
        return [r for r in self.results if not r.ok]

    def render_text(self) -> str:
        lines = [r.line() for r in sorted(self.results, key=lambda r: (r.ok, r.change.order, r.change.topic))]
        lines.append(self.summary_line())
        return "\n".join(lines)

    def summary_line(self) -> str:
        done = [r for r in self.results if r.ok]

        def count(kind: type[Change]) -> int:
            return sum(1 for r in done if isinstance(r.change, kind) and not r.already_existed)

        updated = count(UpdateConfig) + count(IncreasePartitions)
        text = f"{count(CreateTopic)} created, {updated} updated, {count(DeleteTopic)} deleted"
        existed = sum(1 for r in done if r.already_existed)
        if existed:
            text += f", {existed} already existed"
        if self.failed:
            return f"Apply failed for {len(self.failed)} of {len(self.results)} changes ({text})."
        return f"Apply complete: {text} in {self.seconds:.1f} s."

    def raise_if_failed(self) -> None:
        if self.failed:
            first = self.failed[0]
            more = f" (and {len(self.failed) - 1} more)" if len(self.failed) > 1 else ""
            raise ClusterError(
                f"apply failed for {len(self.failed)} of {len(self.results)} changes: "
                f"{first.change.summary()}: {first.error}{more}",
                code=first.error.code if first.error else None,
            )


def apply_plan(
    plan: Plan,
    cluster: ClusterAPI,
    desired: Sequence[TopicSettings] = (),
    *,
    force: bool = False,
    console: Console | None = None,
) -> ApplyReport:
    """Make the changes of `plan`. Refuses (UnsafePlanRefused) before any request if the plan has refused
    changes. `force` deletes topics that consumer groups have committed offsets on. Returns every change's
    result; the caller decides how to report failures."""
    plan.raise_if_unsafe()
    console = console or _stderr_console()
    started = time.monotonic()
    report = ApplyReport()
    progress = _Progress(console)

    creates: list[CreateTopic] = plan.of_kind(CreateTopic)
    if creates:
        by_topic = {c.topic: c for c in creates}
        with progress.step("creating topics", len(creates)) as advance:
            results = cluster.create_topics(creates, on_result=advance)
        report.results.extend(_results(by_topic, results, "already existed"))
        existed = [r.topic for r in results if r.already_existed]
        if existed:
            report.results.extend(_reconcile(cluster, [s for s in desired if s.name in existed]))

    _apply_updates(plan.of_kind(UpdateConfig), plan.of_kind(IncreasePartitions), cluster, report, progress)

    deletes: list[DeleteTopic] = plan.of_kind(DeleteTopic)
    if deletes:
        report.results.extend(_delete(deletes, cluster, progress, force=force))

    report.seconds = time.monotonic() - started
    return report


def _apply_updates(
    updates: list[UpdateConfig],
    increases: list[IncreasePartitions],
    cluster: ClusterAPI,
    report: ApplyReport,
    progress: _Progress,
    note: str = "",
) -> None:
    if updates:
        by_topic = {c.topic: c for c in updates}
        with progress.step("updating topic configs", len(updates)) as advance:
            results = cluster.alter_configs({c.topic: c.diffs for c in updates}, on_result=advance)
        report.results.extend(_results(by_topic, results, note=note))
    if increases:
        by_topic = {c.topic: c for c in increases}
        with progress.step("adding partitions", len(increases)) as advance:
            results = cluster.create_partitions({c.topic: c.new for c in increases}, on_result=advance)
        report.results.extend(_results(by_topic, results, note=note))


def _reconcile(cluster: ClusterAPI, specs: list[TopicSettings]) -> list[ChangeResult]:
    """Topics someone else created while we planned: bring their declared settings in line, or report why not."""
    if not specs:
        return []
    follow_up = make_plan(specs, cluster.describe(config_for=[s.name for s in specs]))
    out: list[ChangeResult] = []
    for change in follow_up.refused:
        error = ClusterError(f"it was created meanwhile by someone else and differs: {change.refused}")
        out.append(ChangeResult(change, ok=False, error=error))
    report = ApplyReport()
    quiet = _Progress(None)
    note = "after a concurrent creation"
    _apply_updates(
        follow_up.of_kind(UpdateConfig), follow_up.of_kind(IncreasePartitions), cluster, report, quiet, note
    )
    return out + report.results


def _delete(
    deletes: list[DeleteTopic], cluster: ClusterAPI, progress: _Progress, *, force: bool
) -> list[ChangeResult]:
    # Offsets may have been committed since the plan was read: check again right before deleting.
    out: list[ChangeResult] = []
    now_used = cluster.committed_groups([d.topic for d in deletes])
    allowed = []
    for d in deletes:
        groups = now_used.get(d.topic, ())
        if groups and not force:
            error = ClusterError(
                f"consumer groups {', '.join(groups)} have committed offsets on it (since the plan was read); "
                "pass --force to delete it anyway"
            )
            out.append(ChangeResult(d, ok=False, error=error))
        else:
            allowed.append(d)
    if allowed:
        by_topic = {d.topic: d for d in allowed}
        with progress.step("deleting topics", len(allowed)) as advance:
            results = cluster.delete_topics([d.topic for d in allowed], on_result=advance)
        out.extend(_results(by_topic, results))
    return out


def _results(
    by_topic: dict[str, Any], results: list[TopicResult], existed_note: str = "", note: str = ""
) -> list[ChangeResult]:
    out = []
    answered = set()
    for r in results:
        change = by_topic.get(r.topic)
        if change is None:
            continue
        answered.add(r.topic)
        text = existed_note if r.already_existed else note
        out.append(ChangeResult(change, ok=r.ok, note=text, error=r.error, already_existed=r.already_existed))
    for topic, change in by_topic.items():
        if topic not in answered:
            error = ClusterError("the broker did not answer for this topic; its state is unknown")
            out.append(ChangeResult(change, ok=False, error=error))
    return out


class _Printer(Protocol):
    is_terminal: bool

    def print(self, text: str, *, highlight: bool = ...) -> None: ...


class _Lines:
    """Plain progress lines on stderr when it is not a terminal: no rich console, so `kpipe apply` in CI or a
    script does not pay rich's import (a tenth of the CLI's own time on a 1,000-topic apply)."""

    is_terminal = False

    def print(self, text: str, *, highlight: bool = False) -> None:
        print(text, file=sys.stderr, flush=True)


def _stderr_console() -> _Printer:
    if not sys.stderr.isatty():
        return _Lines()
    from rich.console import Console

    return Console(stderr=True)


class _Progress:
    """Progress of one batched request: a rich bar on a terminal, start/end lines elsewhere, nothing if small."""

    def __init__(self, console: _Printer | None):
        self.console = console

    @contextmanager
    def step(self, label: str, total: int) -> Iterator[Callable[[TopicResult], None]]:
        if self.console is None or total < PROGRESS_THRESHOLD:
            yield lambda _result: None
            return
        started = time.monotonic()
        if self.console.is_terminal:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            columns = (
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
            )
            with Progress(*columns, console=self.console, transient=True) as bar:  # type: ignore[arg-type]
                task = bar.add_task(label, total=total)
                yield lambda _result: bar.advance(task)
        else:
            self.console.print(f"{label}: {total}…", highlight=False)
            yield lambda _result: None
        self.console.print(
            f"{label}: {total} answered in {time.monotonic() - started:.1f} s", highlight=False
        )
