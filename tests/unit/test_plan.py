"""kpipe.topics.plan: desired topics vs live state, without a broker."""

from __future__ import annotations

import json
from fractions import Fraction

import pytest

from kpipe.compilation.compiled import TopicSettings
from kpipe.errors import EXIT_UNSAFE, UnsafePlanRefused
from kpipe.topics.plan import (
    ChangeReplicationFactor,
    ClusterState,
    ConfigDiff,
    CreateTopic,
    DecreasePartitions,
    DeleteTopic,
    IncreasePartitions,
    LiveTopic,
    UpdateConfig,
    make_plan,
    moved_key_share,
)


def spec(name: str, partitions: int = 3, rf: int = 1, **kw) -> TopicSettings:
    return TopicSettings(name, partitions, rf, **kw)


def live(*topics: LiveTopic, committed: dict[str, tuple[str, ...]] | None = None) -> ClusterState:
    return ClusterState({t.name: t for t in topics}, committed_groups=committed or {})


def brute_force_share(old: int, new: int) -> Fraction:
    period = old * new  # any common multiple works
    moved = sum(1 for h in range(period) if h % old != h % new)
    return Fraction(moved, period)


# --- moved key share ---
@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [(3, 6, 0.5), (1, 2, 0.5), (3, 4, 0.75), (4, 8, 0.5), (6, 9, 1 - 6 / 18), (5, 5, 0.0), (1, 12, 11 / 12)],
)
def test_moved_key_share_known_values(old: int, new: int, expected: float) -> None:
    assert moved_key_share(old, new) == pytest.approx(expected)


@pytest.mark.parametrize("old", range(1, 13))
@pytest.mark.parametrize("new", range(1, 13))
def test_moved_key_share_matches_brute_force(old: int, new: int) -> None:
    assert moved_key_share(old, new) == pytest.approx(float(brute_force_share(old, new)))


# --- creations ---
def test_missing_topics_are_created_with_partitions_replication_and_configs() -> None:
    desired = [spec("orders", 6, 3, config={"retention.ms": "604800000", "cleanup.policy": "delete"})]
    plan = make_plan(desired, live())
    assert plan.changes == (
        CreateTopic(
            "orders",
            partitions=6,
            replication_factor=3,
            config={"retention.ms": "604800000", "cleanup.policy": "delete"},
        ),
    )
    assert plan.has_changes
    assert plan.counts() == {"create": 1, "update": 0, "delete": 0, "refused": 0}


def test_dead_letter_topics_are_part_of_the_plan() -> None:
    desired = [spec("orders"), spec("billing.dlq", 1, implicit=True)]
    plan = make_plan(desired, live(LiveTopic("orders", 3, 1)))
    assert plan.changes == (CreateTopic("billing.dlq", partitions=1, replication_factor=1, implicit=True),)
    assert "create topic billing.dlq (partitions 1, replication 1, dead-letter topic)" in plan.render_text()


def test_declared_topic_wins_over_an_implicit_one_of_the_same_name() -> None:
    desired = [spec("dlq", 1, implicit=True), spec("dlq", 4)]
    (change,) = make_plan(desired, live()).changes
    assert change == CreateTopic("dlq", partitions=4, replication_factor=1)


# --- no drift ---
def test_matching_topic_has_no_changes() -> None:
    desired = [spec("orders", 3, 1, config={"retention.ms": "1000"})]
    plan = make_plan(desired, live(LiveTopic("orders", 3, 1, {"retention.ms": "1000"})))
    assert not plan.has_changes
    assert plan.unchanged == ("orders",)
    assert plan.render_text() == "No changes: the cluster matches the files (1 topics)."


def test_undeclared_broker_defaults_are_never_drift() -> None:
    broker_reports = {"retention.ms": "1000", "segment.bytes": "1073741824", "min.insync.replicas": "2"}
    plan = make_plan(
        [spec("orders", config={"retention.ms": "1000"})], live(LiveTopic("orders", 3, 1, broker_reports))
    )
    assert not plan.has_changes


# --- config updates ---
def test_config_drift_shows_old_and_new_only_for_declared_keys() -> None:
    desired = [spec("orders", config={"retention.ms": "2000", "cleanup.policy": "compact"})]
    current = LiveTopic("orders", 3, 1, {"retention.ms": "1000", "segment.bytes": "1"})
    (change,) = make_plan(desired, live(current)).changes
    assert change == UpdateConfig(
        "orders",
        diffs=(ConfigDiff("cleanup.policy", None, "compact"), ConfigDiff("retention.ms", "1000", "2000")),
    )
    text = make_plan(desired, live(current)).render_text()
    assert text.splitlines()[:3] == [
        "~ update config of topic orders",
        "    cleanup.policy: (unset) -> compact",
        "    retention.ms: 1000 -> 2000",
    ]


# --- partitions ---
def test_partition_increase_on_keyed_topic_warns_about_moved_keys() -> None:
    plan = make_plan([spec("orders", 6, key_field="customer_id")], live(LiveTopic("orders", 3, 1)))
    (change,) = plan.changes
    assert change == IncreasePartitions("orders", old=3, new=6, key_field="customer_id")
    assert not change.is_refused
    assert plan.warnings() == [
        "topic orders is keyed by 'customer_id': about 50% of keys will move to another partition, "
        "so per-key ordering is not kept across the change"
    ]
    assert "    warning: topic orders is keyed by 'customer_id': about 50% of keys" in plan.render_text()
    plan.raise_if_unsafe()  # allowed


def test_partition_increase_on_unkeyed_topic_has_no_warning() -> None:
    plan = make_plan([spec("logs", 4)], live(LiveTopic("logs", 3, 1)))
    assert plan.changes == (IncreasePartitions("logs", old=3, new=4),)
    assert plan.warnings() == []


def test_partition_decrease_is_refused() -> None:
    plan = make_plan([spec("orders", 2)], live(LiveTopic("orders", 6, 1)))
    (change,) = plan.changes
    assert isinstance(change, DecreasePartitions)
    assert change.is_refused and "Kafka cannot remove partitions" in change.refused
    assert plan.counts()["refused"] == 1
    assert plan.actionable == ()
    with pytest.raises(UnsafePlanRefused, match="decrease partitions of topic orders: 6 -> 2") as info:
        plan.raise_if_unsafe()
    assert info.value.exit_code == EXIT_UNSAFE
    assert "! decrease partitions of topic orders: 6 -> 2" in plan.render_text()


def test_replication_factor_change_is_refused() -> None:
    plan = make_plan([spec("orders", 3, 3)], live(LiveTopic("orders", 3, 1)))
    (change,) = plan.changes
    assert isinstance(change, ChangeReplicationFactor)
    assert change.is_refused and "reassignment" in change.refused
    with pytest.raises(UnsafePlanRefused, match="change replication factor of topic orders: 1 -> 3"):
        plan.raise_if_unsafe()


def test_broker_default_replication_is_not_compared() -> None:
    assert not make_plan([spec("orders", 3, -1)], live(LiveTopic("orders", 3, 3))).has_changes


def test_refused_and_safe_changes_on_one_topic_are_both_listed() -> None:
    plan = make_plan([spec("orders", 2, config={"retention.ms": "5"})], live(LiveTopic("orders", 6, 1)))
    assert [type(c) for c in plan.changes] == [UpdateConfig, DecreasePartitions]
    assert [c.topic for c in plan.actionable] == ["orders"]


# --- prune ---
def test_undeclared_topics_are_counted_but_not_listed_without_prune() -> None:
    plan = make_plan([spec("orders")], live(LiveTopic("orders", 3, 1), LiveTopic("old", 1, 1)))
    assert not plan.has_changes
    assert plan.undeclared == ("old",)
    assert "1 topic on the cluster not declared in any file" in plan.render_text()


def test_prune_lists_undeclared_topics_for_deletion_but_never_internal_ones() -> None:
    current = live(
        LiveTopic("orders", 3, 1),
        LiveTopic("old", 2, 1),
        LiveTopic("__consumer_offsets", 50, 1),
        LiveTopic("_schemas", 1, 1),
    )
    plan = make_plan([spec("orders")], current, prune=True)
    assert plan.changes == (DeleteTopic("old", partitions=2),)
    assert "- delete topic old (partitions 2; no file declares it)" in plan.render_text()


def test_prune_refuses_topics_with_committed_offsets_unless_forced() -> None:
    current = live(LiveTopic("old", 1, 1), committed={"old": ("billing", "audit")})
    plan = make_plan([], current, prune=True)
    (change,) = plan.changes
    assert (
        change.refused
        == "consumer groups audit, billing have committed offsets on it; pass --force to delete it anyway"
    )
    with pytest.raises(UnsafePlanRefused):
        plan.raise_if_unsafe()

    forced = make_plan([], current, prune=True, force=True)
    (change,) = forced.changes
    assert not change.is_refused
    assert change.warnings() == ["consumer groups with committed offsets on it: audit, billing"]
    forced.raise_if_unsafe()


# --- ordering and rendering ---
def test_changes_are_ordered_create_update_partitions_delete_then_by_name() -> None:
    current = live(
        LiveTopic("b-cfg", 1, 1, {"retention.ms": "1"}),
        LiveTopic("a-cfg", 1, 1, {"retention.ms": "1"}),
        LiveTopic("grow", 1, 1),
        LiveTopic("zz-old", 1, 1),
    )
    desired = [
        spec("new-b", 1),
        spec("new-a", 1),
        spec("b-cfg", 1, config={"retention.ms": "2"}),
        spec("a-cfg", 1, config={"retention.ms": "2"}),
        spec("grow", 2),
    ]
    plan = make_plan(desired, current, prune=True)
    assert [(c.kind, c.topic) for c in plan.changes] == [
        ("create_topic", "new-a"),
        ("create_topic", "new-b"),
        ("update_config", "a-cfg"),
        ("update_config", "b-cfg"),
        ("increase_partitions", "grow"),
        ("delete_topic", "zz-old"),
    ]
    assert plan.summary_line() == "Plan: 2 to create, 3 to update, 1 to delete."


def test_text_rendering_of_a_creation() -> None:
    desired = [spec("orders", 6, 3, config={"retention.ms": "1000", "cleanup.policy": "delete"})]
    assert make_plan(desired, live()).render_text().splitlines() == [
        "+ create topic orders (partitions 6, replication 3)",
        "    cleanup.policy = delete",
        "    retention.ms = 1000",
        "Plan: 1 to create, 0 to update, 0 to delete.",
    ]


def test_json_rendering() -> None:
    desired = [
        spec("orders", 6, key_field="id"),
        spec("new", 1, config={"retention.ms": "5"}),
        spec("small", 1),
    ]
    current = live(LiveTopic("orders", 3, 1), LiveTopic("small", 4, 1), LiveTopic("other", 1, 1))
    data = json.loads(make_plan(desired, current).render_json())
    assert data["has_changes"] is True
    assert data["summary"] == {"create": 1, "update": 1, "delete": 0, "refused": 1}
    assert data["undeclared"] == 1
    assert data["changes"] == [
        {
            "action": "create_topic",
            "topic": "new",
            "partitions": 1,
            "replication_factor": 1,
            "config": {"retention.ms": "5"},
            "implicit": False,
            "refused": None,
            "warnings": [],
        },
        {
            "action": "increase_partitions",
            "topic": "orders",
            "old_partitions": 3,
            "new_partitions": 6,
            "key_field": "id",
            "moved_key_share": 0.5,
            "refused": None,
            "warnings": [
                "topic orders is keyed by 'id': about 50% of keys will move to another partition, "
                "so per-key ordering is not kept across the change"
            ],
        },
        {
            "action": "decrease_partitions",
            "topic": "small",
            "old_partitions": 4,
            "new_partitions": 1,
            "refused": "Kafka cannot remove partitions from a topic; "
            "recreate it under a new name (or delete it) to have fewer",
            "warnings": [],
        },
    ]


def test_no_changes_json() -> None:
    data = make_plan([spec("a")], live(LiveTopic("a", 3, 1))).to_json()
    assert data == {
        "has_changes": False,
        "summary": {"create": 0, "update": 0, "delete": 0, "refused": 0},
        "changes": [],
        "unchanged": ["a"],
        "undeclared": 0,
    }


def test_an_existing_derived_dead_letter_topic_is_left_as_it_is() -> None:
    # Its partitions follow the source topic only when kpipe creates it; afterwards they are not managed.
    dlq = TopicSettings("billing.dlq", partitions=1, replication_factor=3, implicit=True)
    assert not make_plan([dlq], live(LiveTopic("billing.dlq", 6, 1))).has_changes
    created = make_plan([dlq], live())
    assert [type(c).__name__ for c in created.changes] == ["CreateTopic"]
