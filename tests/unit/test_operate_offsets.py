"""Offset resets as plans: per partition current → new and the events it puts back or skips; refused while the
group is active. The cluster is FakeGroups (tests/fake_cluster.py): an active group's members and the broker's
own refusal are what only Apache Kafka shows."""

from __future__ import annotations

import json

import pytest

from fake_cluster import FakeGroups
from kpipe.compilation.compiled import ClientConfig, CommitPolicy, ConsumerGroupSettings, ErrorPolicy, Setting
from kpipe.errors import ClusterError, UnsafePlanRefused, UsageError
from kpipe.operate.offsets import execute_reset, parse_topic_selection, plan_reset, read_reset_plan
from kpipe.operate.positions import AtOffset, Bounds, Earliest, Latest, Shift
from kpipe.topics.cluster import GroupDescription, GroupMember


def group(
    auto_offset_reset: str = "earliest", topics: tuple[str, ...] = ("orders",)
) -> ConsumerGroupSettings:
    return ConsumerGroupSettings(
        group_id="billing-v2",
        topics=topics,
        handler="app:handle",
        instances=1,
        commit=CommitPolicy("per_message"),
        on_error=ErrorPolicy("skip"),
        client=ClientConfig((Setting("auto.offset.reset", auto_offset_reset, "declared"),)),
    )


BOUNDS = {("orders", 0): Bounds(0, 100), ("orders", 1): Bounds(20, 50), ("orders", 2): Bounds(0, 10)}
COMMITTED = {("orders", 0): 80, ("orders", 1): 30, ("orders", 2): None}
IDLE = GroupDescription("billing-v2", "empty")


def test_a_plan_counts_what_it_puts_back_and_what_it_skips() -> None:
    plan = plan_reset("billing", group(), AtOffset(40), BOUNDS, COMMITTED, IDLE)
    assert [(c.partition, c.current, c.new, c.reread, c.skipped) for c in plan.changes] == [
        (0, 80, 40, 40, 0),
        (1, 30, 40, 0, 10),
        (2, None, 10, 0, 10),  # no commit: it would start at the log start (0); the end is 10
    ]
    assert plan.has_changes and not plan.active
    assert plan.render_text().splitlines() == [
        "Consumer group 'billing' (id billing-v2, state empty): reset to offset 40",
        "  orders[0]  80 → 40  40 event(s) to read again",
        "  orders[1]  30 → 40  10 event(s) skipped",
        "  orders[2]  none (starts at 0) → 10  10 event(s) skipped",
        "Plan: 3 of 3 partition(s) change: 40 event(s) to read again, 20 skipped.",
    ]
    data = json.loads(plan.render_json())
    assert (data["changes"], data["reread"], data["skipped"], data["active"]) == (3, 40, 20, False)
    assert data["partitions"][2] == {
        "topic": "orders", "partition": 2, "current": None, "new": 10, "low": 0, "high": 10,
        "reread": 0, "skipped": 10,
    }  # fmt: skip


def test_a_group_that_starts_at_the_end_counts_from_the_end() -> None:
    plan = plan_reset("billing", group("latest"), Earliest(), BOUNDS, COMMITTED, IDLE)
    assert (plan.changes[2].starts_at, plan.changes[2].reread) == (10, 10)


def test_a_shift_moves_from_the_committed_offset() -> None:
    plan = plan_reset("billing", group(), Shift(-25), BOUNDS, COMMITTED, IDLE)
    assert [c.new for c in plan.changes] == [55, 20, 0]  # 30-25 is below the log start 20


def test_no_change_says_so() -> None:
    bounds = {("orders", 0): Bounds(0, 100)}
    plan = plan_reset("billing", group(), Latest(), bounds, {("orders", 0): 100}, IDLE)
    assert not plan.has_changes
    assert plan.render_text().splitlines()[-1] == "Plan: no change; the group is already there."


@pytest.mark.parametrize(
    ("description", "why"),
    [
        (GroupDescription("billing-v2", "stable"), "is active (state stable): stop its consumers"),
        (  # what Apache Kafka shows; the embedded broker lists no members
            GroupDescription("billing-v2", "stable", (GroupMember("c-1", "/10.0.0.1"),)),
            "is active (state stable, 1 member(s)): stop",
        ),
        (GroupDescription("billing-v2", "preparing_rebalance"), "(state preparing_rebalance)"),
    ],
)
def test_an_active_group_is_refused(description: GroupDescription, why: str) -> None:
    plan = plan_reset("billing", group(), Earliest(), BOUNDS, COMMITTED, description)
    assert plan.active
    with pytest.raises(UnsafePlanRefused) as refused:
        plan.raise_if_unsafe()
    assert str(refused.value).startswith("consumer group 'billing' (id billing-v2) ")
    assert why in str(refused.value)


def cluster() -> FakeGroups:
    return FakeGroups(
        {"orders": 2},
        {("orders", 0): (0, 100), ("orders", 1): (0, 50)},
        {"billing-v2": {("orders", 0): 80, ("orders", 1): 50}},
    )


def test_a_reset_is_executed_and_read_back() -> None:
    fake = cluster()
    plan = read_reset_plan(fake, None, group(), "billing", AtOffset(10), [("orders", 1)])  # type: ignore[arg-type]
    assert [(c.partition, c.new) for c in plan.changes] == [(1, 10)]
    assert execute_reset(plan, fake, fake) == {("orders", 1): 10}
    assert fake.altered == [("billing-v2", {("orders", 1): 10})]


def test_a_group_that_started_after_the_plan_is_refused_at_execution() -> None:
    fake = cluster()
    plan = read_reset_plan(fake, None, group(), "billing", Earliest(), [("orders", None)])  # type: ignore[arg-type]
    fake.groups["billing-v2"] = ("stable", ("c-1",))
    with pytest.raises(UnsafePlanRefused, match=r"is active \(state stable, 1 member\(s\)\)"):
        execute_reset(plan, fake, fake)
    assert fake.altered == []


def test_the_broker_refusing_because_of_members_is_unsafe_too() -> None:
    fake = cluster()
    plan = read_reset_plan(fake, None, group(), "billing", Earliest(), [("orders", None)])  # type: ignore[arg-type]

    class RefusingAdmin:  # Apache Kafka's answer when a member joined between the check and the request
        def alter(self, group: str, offsets: object) -> None:
            raise UnsafePlanRefused(f"consumer group '{group}' is active (the broker says UNKNOWN_MEMBER_ID)")

    with pytest.raises(UnsafePlanRefused, match="UNKNOWN_MEMBER_ID"):
        execute_reset(plan, fake, RefusingAdmin())


def test_topic_selection() -> None:
    g = group(topics=("orders", "payments"))
    assert parse_topic_selection([], g) == [("orders", None), ("payments", None)]
    assert parse_topic_selection(["orders:2", "payments"], g) == [("orders", 2), ("payments", None)]
    with pytest.raises(
        UsageError,
        match=r"^--topic refunds: consumer group 'billing-v2' does not read it \(it reads orders, payments\)$",
    ):
        parse_topic_selection(["refunds"], g)
    with pytest.raises(UsageError, match="expected TOPIC or TOPIC:PARTITION"):
        parse_topic_selection(["orders:x"], g)


class FakeAdminClient:
    """A fake of confluent_kafka's AdminClient answering AlterConsumerGroupOffsets with one error, as Apache Kafka
    does for a group with members (the embedded broker accepts the request)."""

    def __init__(self, code: int):
        self.code = code

    def alter_consumer_group_offsets(self, requests: list, request_timeout: float) -> dict:
        import concurrent.futures

        from confluent_kafka import KafkaError, KafkaException

        future: concurrent.futures.Future = concurrent.futures.Future()
        future.set_exception(KafkaException(KafkaError(self.code)))
        return {requests[0]: future}


@pytest.mark.parametrize(
    ("code", "error", "message"),
    [
        (25, UnsafePlanRefused, "consumer group 'billing-v2' is active (the broker says UNKNOWN_MEMBER_ID)"),
        (27, UnsafePlanRefused, "is active (the broker says REBALANCE_IN_PROGRESS)"),
        (
            30,
            ClusterError,
            "resetting the offsets of consumer group 'billing-v2': ",
        ),  # GROUP_AUTHORIZATION_FAILED
    ],
)
def test_the_brokers_refusal_is_translated_by_code(code: int, error: type, message: str) -> None:
    from kpipe.topics.group_offsets import GroupOffsetsAdmin

    admin = GroupOffsetsAdmin(
        {"bootstrap.servers": "fake:9092"}, admin_factory=lambda config: FakeAdminClient(code)
    )
    with pytest.raises(error) as caught:
        admin.alter("billing-v2", {("orders", 0): 5})
    assert message in str(caught.value)
    assert type(caught.value) is error


def test_groups_are_found_by_the_start_of_their_id_without_reading_their_offsets() -> None:
    import concurrent.futures
    from types import SimpleNamespace

    from kpipe.topics.group_offsets import GroupOffsetsAdmin

    class ListingAdminClient:
        def list_consumer_groups(self, request_timeout: float) -> concurrent.futures.Future:
            future: concurrent.futures.Future = concurrent.futures.Future()
            ids = ["kpipe-replay.a.dlq", "billing", "kpipe-replay.a.dlq:handler", "kpipe-replay.b.dlq"]
            future.set_result(SimpleNamespace(valid=[SimpleNamespace(group_id=g) for g in ids]))
            return future

    admin = GroupOffsetsAdmin(
        {"bootstrap.servers": "fake:9092"}, admin_factory=lambda config: ListingAdminClient()
    )
    assert admin.group_ids("kpipe-replay.a.dlq") == ["kpipe-replay.a.dlq", "kpipe-replay.a.dlq:handler"]


@pytest.mark.parametrize(
    ("reset", "current", "reread", "skipped"),
    [
        ("earliest", 5, 0, 0),  # retention deleted 5..99: the group starts at the log start, 100, already
        ("latest", 5, 100, 0),  # ... or at the log end, 200: earliest puts all 100 back in front of it
        ("earliest", 500, 0, 0),  # a commit past the log end (the log was truncated): out of range too
    ],
)
def test_a_committed_offset_outside_the_log_counts_from_where_the_group_would_really_start(
    reset: str, current: int, reread: int, skipped: int
) -> None:
    bounds = {("orders", 0): Bounds(100, 200)}
    plan = plan_reset("billing", group(reset), Earliest(), bounds, {("orders", 0): current}, IDLE)
    (change,) = plan.changes
    assert (change.current, change.new, change.reread, change.skipped) == (current, 100, reread, skipped)
    assert plan.offsets == {("orders", 0): 100}  # the reset itself still commits the new offset
