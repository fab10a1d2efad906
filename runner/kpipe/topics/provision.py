"""Make sure the topics a command uses exist before its clients start: what `kpipe run` and `kpipe produce` do.

    provision(cluster, provisioning, create=None) -> ProvisionReport

It reads the same plan `kpipe plan` shows, restricted to the topics in use, and carries out only its
creations, through `apply_plan` (the code path of `kpipe apply`). It never alters or deletes: an existing topic
whose partitions or declared configs differ from the files is reported as a warning that points to
`kpipe plan`. With creation off (`--no-create-topics`, `cluster.create_missing_topics: false`) a missing topic is
a ClusterError (exit 3) naming every one.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from kpipe.compilation.compiled import Provisioning
from kpipe.errors import ClusterError
from kpipe.topics.apply import ChangeResult, apply_plan, read_plan
from kpipe.topics.cluster import ClusterAPI
from kpipe.topics.plan import (
    CreateTopic,
    DecreasePartitions,
    IncreasePartitions,
    Plan,
    UpdateConfig,
)

log = logging.getLogger("kpipe.topics")

# Error codes a broker answers when it will not let this client create a topic, and what to do about each.
_REFUSALS = {
    "TOPIC_AUTHORIZATION_FAILED": "this client is not allowed to create topics",
    "CLUSTER_AUTHORIZATION_FAILED": "this client is not allowed to create topics",
    "POLICY_VIOLATION": "the cluster's topic-creation policy refused it",
    "INVALID_REPLICATION_FACTOR": "the declared replication factor is refused",
    "INVALID_PARTITIONS": "the declared partition count is refused",
    "INVALID_CONFIG": "a declared config is refused",
    "UNSUPPORTED_VERSION": "the broker does not support creating topics",
}


@dataclass
class ProvisionReport:
    created: list[str] = field(default_factory=list)
    # One line per existing topic that differs from the files.
    drift: list[str] = field(default_factory=list)


def provision(
    cluster: ClusterAPI,
    provisioning: Provisioning,
    *,
    create: bool | None = None,
    info: Callable[[str], None] | None = None,
    warn: Callable[[str], None] | None = None,
) -> ProvisionReport:
    """Create the missing topics of `provisioning` (or refuse, when creation is off) and warn about drift.

    create: None follows provisioning.create_missing (cluster.create_missing_topics); False/True a CLI flag.
    info/warn: where the "created topic" and drift lines go (default: the kpipe.topics logger).
    """
    info = info or log.info
    warn = warn or log.warning
    topics = list(provisioning.topics)
    report = ProvisionReport()
    if not topics:
        return report
    plan = read_plan(cluster, topics)
    report.drift = drift_lines(plan)
    for line in report.drift:
        warn(line)
    missing = plan.of_kind(CreateTopic)
    if not missing:
        return report
    if not (provisioning.create_missing if create is None else create):
        why = "--no-create-topics" if create is False else "cluster.create_missing_topics: false"
        if len(missing) == 1:
            what = f"topic {missing[0].topic} is missing on {cluster.bootstrap}"
            it = "it"
        else:
            names = ", ".join(c.topic for c in missing)
            what = f"{len(missing)} topics are missing on {cluster.bootstrap}: {names}"
            it = "them"
        raise ClusterError(
            f"{what} (not creating {it}: {why}); create {it} with `kpipe apply`", code="UNKNOWN_TOPIC_OR_PART"
        )
    # No declarations for apply to reconcile with: a topic created meanwhile by someone else is left as it is.
    result = apply_plan(Plan(tuple(missing)), cluster, ())
    for r in result.results:
        if r.ok and not r.note:
            report.created.append(r.change.topic)
            info(f"created topic {_created(r.change)}")
    failed = result.failed
    if failed:
        raise refusal(failed[0], more=len(failed) - 1)
    return report


def drift_lines(plan: Plan) -> list[str]:
    """One line per existing topic whose partition count or declared configs differ from the files."""
    by_topic: dict[str, list[str]] = {}
    # Partitions first, then configs, whatever order the plan lists them in.
    for change in sorted(
        plan.changes, key=lambda c: not isinstance(c, IncreasePartitions | DecreasePartitions)
    ):
        if isinstance(change, IncreasePartitions | DecreasePartitions):
            by_topic.setdefault(change.topic, []).append(
                f"partitions {change.old} on the cluster, {change.new} in the files"
            )
        elif isinstance(change, UpdateConfig):
            by_topic.setdefault(change.topic, []).extend(
                f"{d.key} {'unset' if d.old is None else d.old} on the cluster, {d.new} in the files"
                for d in change.diffs
            )
    return [
        f"topic {topic} differs from the files: {'; '.join(diffs)}; `kpipe plan` shows the changes "
        "(kpipe run never alters an existing topic)"
        for topic, diffs in sorted(by_topic.items())
    ]


def refusal(result: ChangeResult, more: int = 0) -> ClusterError:
    """A failed creation as one line: which topic, why the broker refused, what to do."""
    error = result.error
    code = error.code if error else None
    reason = _REFUSALS.get(code or "")
    detail = f"{reason} ({code})" if reason else str(error)
    hint = (
        "create it with `kpipe apply` as a user allowed to, or ask the cluster's administrators"
        if code in ("TOPIC_AUTHORIZATION_FAILED", "CLUSTER_AUTHORIZATION_FAILED", "POLICY_VIOLATION")
        else "fix the topic's declaration, or create it with `kpipe apply`"
    )
    others = f" (and {more} more)" if more else ""
    return ClusterError(f"cannot create topic {result.change.topic}: {detail}{others}; {hint}", code=code)


def _created(change: CreateTopic) -> str:
    rf = change.replication_factor if change.replication_factor > 0 else "broker default"
    kind = ", dead-letter topic" if change.implicit else ""
    return f"{change.topic} (partitions {change.partitions}, replication {rf}{kind})"
