"""Rules that span objects and files: references, names, keys, and settings that contradict each other.

Pure: takes the assembled Declarations and what is known about each schema, returns every diagnostic found.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from kpipe.diagnostics import Diagnostic, did_you_mean, error, warning
from kpipe.model import librdkafka as props
from kpipe.model.assemble import Declarations, Declared
from kpipe.model.pipeline import ConsumerGroupSpec, ProducerSpec

TOPIC_NAME_RE = re.compile(r"^[A-Za-z0-9._-]+$")
MAX_TOPIC_NAME = 249


@dataclass(frozen=True)
class SchemaFields:
    """What the checks need to know of a compiled schema: its JSON field names and which are required."""

    fields: frozenset[str]
    required: frozenset[str]


def dead_letter_topic(name: str, group: ConsumerGroupSpec) -> str | None:
    """The dead-letter topic a group writes to, or None when its errors never go to one."""
    if group.on_error.action != "dead_letter":
        return None
    return group.on_error.dead_letter_topic or f"{name}.dlq"


def check_project(project: Declarations, schemas: Mapping[str, SchemaFields | None]) -> list[Diagnostic]:
    out: list[Diagnostic] = []
    _check_topic_names(project, out)
    _check_topics(project, schemas, out)
    _check_producers(project, out)
    _check_consumers(project, out)
    _check_cluster(project, out)
    return out


def _ref(
    out: list[Diagnostic],
    owner: Declared,
    subpath: tuple,
    target: str,
    section: str,
    project: Declarations,
    what: str,
) -> bool:
    """Report a reference to an undeclared name. True when the reference resolves."""
    if target in project.names(section):
        return True
    noun = {"topics": "topic", "schemas": "schema", "producers": "producer"}[section]
    out.append(
        error(
            f"{what} refers to unknown {noun} '{target}'",
            owner.locate(*subpath),
            hint=did_you_mean(target, project.names(section)),
            code="unknown-reference",
        )
    )
    return False


def topic_name_problem(name: str) -> str | None:
    if name in (".", ".."):
        return f"topic name '{name}' is not allowed"
    if len(name) > MAX_TOPIC_NAME:
        return f"topic name is {len(name)} characters long; Kafka allows at most {MAX_TOPIC_NAME}"
    if not TOPIC_NAME_RE.match(name):
        bad = sorted({c for c in name if not re.match(r"[A-Za-z0-9._-]", c)})
        return f"topic name '{name}' has characters Kafka does not allow: {' '.join(repr(c) for c in bad)} (use letters, digits, '.', '_' and '-')"
    return None


def _check_topic_names(project: Declarations, out: list[Diagnostic]) -> None:
    folded: dict[str, str] = {}
    for name, topic in sorted(project.topics.items()):
        problem = topic_name_problem(name)
        if problem:
            out.append(error(problem, topic.position, code="topic-name"))
            continue
        # Kafka metric names replace '.' with '_', so such names collide (the broker warns and may refuse).
        key = name.replace(".", "_")
        if key in folded:
            out.append(
                warning(
                    f"topic '{name}' collides with '{folded[key]}' once '.' and '_' are treated alike "
                    "(Kafka's metric names); Kafka may refuse to create one of them",
                    topic.position,
                    code="topic-name-collision",
                )
            )
        else:
            folded[key] = name
    for name, group in project.consumers.items():
        if name.startswith("__"):
            out.append(error(f"consumer group name '{name}' is reserved (starts with '__')", group.position))


def _check_topics(
    project: Declarations, schemas: Mapping[str, SchemaFields | None], out: list[Diagnostic]
) -> None:
    for name, topic in project.topics.items():
        spec = topic.spec
        if spec.schema_ is not None and _ref(
            out, topic, ("schema",), spec.schema_, "schemas", project, f"topic '{name}'"
        ):
            fields = schemas.get(spec.schema_)
            if spec.key and fields is not None:
                if spec.key not in fields.fields:
                    out.append(
                        error(
                            f"topic '{name}': key field '{spec.key}' is not a field of schema '{spec.schema_}'",
                            topic.locate("key"),
                            hint=did_you_mean(spec.key, fields.fields)
                            or "fields: " + ", ".join(sorted(fields.fields)),
                            code="unknown-key-field",
                        )
                    )
                elif spec.key not in fields.required:
                    out.append(
                        warning(
                            f"topic '{name}': key field '{spec.key}' is optional in schema '{spec.schema_}'; "
                            "events without it cannot be keyed",
                            topic.locate("key"),
                            hint=f"make '{spec.key}' required in the schema",
                            code="optional-key-field",
                        )
                    )
        for key, value in spec.config.items():
            problem, hint = props.check_topic_config(key, value)
            if problem:
                out.append(
                    error(
                        f"topic '{name}': {problem}",
                        topic.locate("config", key, prefer="key"),
                        hint=hint,
                        code="topic-config",
                    )
                )
        if spec.replication_factor is not None and spec.config.get("min.insync.replicas") is not None:
            try:
                isr = int(spec.config["min.insync.replicas"])
            except (TypeError, ValueError):
                isr = None
            if isr is not None and isr > spec.replication_factor:
                out.append(
                    error(
                        f"topic '{name}': min.insync.replicas={isr} exceeds replication_factor={spec.replication_factor}; "
                        "no acks=all write could ever succeed",
                        topic.locate("config", "min.insync.replicas"),
                        code="topic-config",
                    )
                )


def _client_config(out: list[Diagnostic], owner: Declared, config: Mapping, kind: str, label: str) -> None:
    for key, value in config.items():
        problem, hint = props.check_client_property(key, value, kind)
        if problem:
            out.append(
                error(
                    f"{label}: {problem}",
                    owner.locate("config", key, prefer="key"),
                    hint=hint,
                    code="client-config",
                )
            )


def _truthy(value: object) -> bool | None:
    text = str(value).strip().lower()
    if text in ("true", "1", "yes", "on"):
        return True
    if text in ("false", "0", "no", "off"):
        return False
    return None


def _show(value: object) -> str:
    """A config value as YAML spells it (true, not Python's True)."""
    return str(value).lower() if isinstance(value, bool) else str(value)


def _check_producers(project: Declarations, out: list[Diagnostic]) -> None:
    for name, producer in project.producers.items():
        spec: ProducerSpec = producer.spec
        label = f"producer '{name}'"
        _ref(out, producer, ("topic",), spec.topic, "topics", project, label)
        _client_config(out, producer, spec.config, "producer", label)
        config = {props.canonical_name(k): v for k, v in spec.config.items()}
        idempotent = spec.idempotent
        if "enable.idempotence" in config:
            declared = _truthy(config["enable.idempotence"])
            if declared is not None and declared != spec.idempotent:
                out.append(
                    error(
                        f"{label}: config enable.idempotence={_show(config['enable.idempotence'])} contradicts idempotent: {_show(spec.idempotent)}",
                        producer.locate("config", "enable.idempotence", prefer="key"),
                        hint="set it once, with the 'idempotent' field",
                        code="contradiction",
                    )
                )
            idempotent = bool(declared)
        acks, acks_owner, acks_where = _compiled_acks(project, producer)
        if idempotent and acks not in ("all", "-1"):
            out.append(
                error(
                    f"{label}: an idempotent producer needs acks=all (got acks={acks})",
                    acks_owner.locate(*acks_where),
                    hint="set acks: all, or idempotent: false",
                    code="contradiction",
                )
            )
        if idempotent and spec.retries == 0:
            out.append(
                error(
                    f"{label}: an idempotent producer needs retries > 0",
                    producer.locate("retries"),
                    code="contradiction",
                )
            )
        in_flight = config.get("max.in.flight.requests.per.connection")
        if idempotent and in_flight is not None and str(in_flight).isdigit() and int(in_flight) > 5:
            out.append(
                error(
                    f"{label}: an idempotent producer allows at most 5 in-flight requests per connection (got {in_flight})",
                    producer.locate("config", "max.in.flight.requests.per.connection"),
                    code="contradiction",
                )
            )
        _fields_also_in_config(out, producer, config, label)


def _compiled_acks(project: Declarations, producer: Declared) -> tuple[str, Declared, tuple[str, ...]]:
    """acks as compiled, and where it is written: the producer's config, else its field when written, else
    cluster.config."""
    spec: ProducerSpec = producer.spec
    acks_keys = [k for k in spec.config if props.canonical_name(k) == "request.required.acks"]
    cluster_acks = [
        k
        for k in (project.cluster.spec.config if project.cluster else {})
        if props.canonical_name(k) == "request.required.acks"
    ]
    if not acks_keys and not producer.written("acks") and cluster_acks and project.cluster:
        return str(project.cluster.spec.config[cluster_acks[0]]), project.cluster, ("config", cluster_acks[0])
    if acks_keys:
        return str(spec.config[acks_keys[0]]), producer, ("config", acks_keys[0])
    return str(spec.acks), producer, ("acks",)


def _fields_also_in_config(out: list[Diagnostic], producer: Declared, config: Mapping, label: str) -> None:
    """A producer setting written both as its field and as its librdkafka key in config."""
    spec: ProducerSpec = producer.spec
    for field_name, key in props.PRODUCER_FIELDS.items():
        if field_name == "idempotent":
            continue  # a disagreeing enable.idempotence is reported above, as a contradiction
        canonical = props.canonical_name(key)
        if canonical in config and producer.written(field_name):
            out.append(
                error(
                    f"{label}: '{field_name}' is set both as a field and in config",
                    producer.locate(
                        "config",
                        next(k for k in spec.config if props.canonical_name(k) == canonical),
                        prefer="key",
                    ),
                    hint=f"keep only '{field_name}'",
                    code="contradiction",
                )
            )


def _check_consumers(project: Declarations, out: list[Diagnostic]) -> None:
    for name, group in project.consumers.items():
        spec: ConsumerGroupSpec = group.spec
        label = f"consumer group '{name}'"
        known = [
            t
            for i, t in enumerate(spec.topics)
            if _ref(out, group, ("topics", i), t, "topics", project, label)
        ]
        _client_config(out, group, spec.config, "consumer", label)
        _check_emits(project, name, group, out)
        _check_deploy(project, name, group, out)
        _check_consumer_config(name, group, label, out)
        _check_static_member(project, name, group, out)
        _check_error_policy(project, name, group, label, out)
        config = {props.canonical_name(k): v for k, v in spec.config.items()}
        _check_handler_timeout(project, group, config, label, out)
        partitions = [project.topics[t].spec.partitions for t in known if t in project.topics]
        out += _check_concurrency(group, label, partitions)
        # Instances beyond the partitions: the extra members sit idle.
        if partitions and spec.instances > max(partitions):
            out.append(
                warning(
                    f"{label}: {spec.instances} instances but at most {max(partitions)} partitions to share; "
                    f"{spec.instances - max(partitions)} will sit idle",
                    group.locate("instances"),
                    hint="add partitions or lower instances",
                    code="idle-instances",
                )
            )


def _check_consumer_config(name: str, group: Declared, label: str, out: list[Diagnostic]) -> None:
    """librdkafka settings in a group's config that contradict what kpipe manages: its id, commits, offsets."""
    spec: ConsumerGroupSpec = group.spec
    config = {props.canonical_name(k): v for k, v in spec.config.items()}
    strategy = spec.commit.strategy
    if "group.id" in config:
        out.append(
            error(
                f"{label}: config sets group.id, but a group's id is its name",
                group.locate("config", "group.id", prefer="key"),
                hint=f"rename the group instead (it is '{name}')",
                code="contradiction",
            )
        )
    auto_commit = _truthy(config["enable.auto.commit"]) if "enable.auto.commit" in config else None
    if auto_commit is True and strategy != "auto":
        out.append(
            error(
                f"{label}: enable.auto.commit=true contradicts commit strategy '{strategy}'",
                group.locate("config", "enable.auto.commit"),
                hint="remove it: kpipe commits by the declared strategy",
                code="contradiction",
            )
        )
    if auto_commit is False and strategy == "auto":
        out.append(
            error(
                f"{label}: enable.auto.commit=false contradicts commit strategy 'auto'",
                group.locate("config", "enable.auto.commit"),
                hint="use strategy: batch or per_message for manual commits",
                code="contradiction",
            )
        )
    if "enable.auto.offset.store" in config and _truthy(config["enable.auto.offset.store"]):
        out.append(
            error(
                f"{label}: enable.auto.offset.store=true would commit events before the handler finished",
                group.locate("config", "enable.auto.offset.store"),
                hint="remove it: kpipe stores each offset after the handler succeeds",
                code="contradiction",
            )
        )
    if "auto.offset.reset" in config:
        out.append(
            error(
                f"{label}: config sets auto.offset.reset; use the 'auto_offset_reset' field",
                group.locate("config", "auto.offset.reset", prefer="key"),
                code="contradiction",
            )
        )
    if strategy == "auto" and "auto.commit.interval.ms" in config:
        out.append(
            error(
                f"{label}: config sets auto.commit.interval.ms; use commit.interval_ms",
                group.locate("config", "auto.commit.interval.ms", prefer="key"),
                code="contradiction",
            )
        )


def _check_error_policy(
    project: Declarations, name: str, group: Declared, label: str, out: list[Diagnostic]
) -> None:
    """on_error: the dead-letter topic (its name, a loop back into the group, a typo) and the backoff bounds."""
    spec: ConsumerGroupSpec = group.spec
    dlq = dead_letter_topic(name, spec)
    if dlq is not None:
        problem = topic_name_problem(dlq)
        where = ("on_error", "dead_letter_topic") if spec.on_error.dead_letter_topic else ("on_error",)
        if problem:
            out.append(error(f"{label}: dead-letter {problem}", group.locate(*where), code="topic-name"))
        elif dlq in spec.topics:
            out.append(
                error(
                    f"{label}: dead-letter topic '{dlq}' is also one of the group's input topics; failures would loop",
                    group.locate(*where),
                    code="dead-letter-loop",
                )
            )
        elif spec.on_error.dead_letter_topic and dlq not in project.topics:
            hint = did_you_mean(dlq, project.topics)
            if hint:
                out.append(
                    warning(
                        f"{label}: dead-letter topic '{dlq}' is not declared; kpipe will create it",
                        group.locate(*where),
                        hint=hint,
                        code="undeclared-dead-letter-topic",
                    )
                )
    elif spec.on_error.dead_letter_topic:
        out.append(
            warning(
                f"{label}: dead_letter_topic is ignored with on_error.action '{spec.on_error.action}'",
                group.locate("on_error", "dead_letter_topic", prefer="key"),
                code="unused-setting",
            )
        )
    if spec.on_error.max_backoff_ms < spec.on_error.backoff_ms:
        out.append(
            error(
                f"{label}: on_error.max_backoff_ms ({spec.on_error.max_backoff_ms}) is below backoff_ms ({spec.on_error.backoff_ms})",
                group.locate("on_error", "max_backoff_ms"),
                code="invalid-value",
            )
        )


# librdkafka's max.poll.interval.ms when nothing sets it.
DEFAULT_MAX_POLL_INTERVAL_MS = 300_000


def _check_handler_timeout(
    project: Declarations, group: Declared, config: Mapping, label: str, out: list[Diagnostic]
) -> None:
    """A handler timeout at or above max.poll.interval.ms never fires: the group evicts the member first."""
    timeout = group.spec.on_error.timeout_ms
    if timeout is None:
        return
    cluster = {props.canonical_name(k): v for k, v in project.cluster_spec.config.items()}
    raw = config.get(
        "max.poll.interval.ms", cluster.get("max.poll.interval.ms", DEFAULT_MAX_POLL_INTERVAL_MS)
    )
    try:
        limit = int(str(raw))
    except ValueError:
        return  # the librdkafka property check reports a bad value
    if timeout >= limit:
        out.append(
            warning(
                f"{label}: on_error.timeout_ms ({timeout}) is not below max.poll.interval.ms ({limit}); "
                "the group evicts a hung member before the hang is reported",
                group.locate("on_error", "timeout_ms"),
                hint=f"lower timeout_ms below {limit}, or raise max.poll.interval.ms in the group's config",
                code="unreachable-timeout",
            )
        )


def _check_static_member(project: Declarations, name: str, group: Declared, out: list[Diagnostic]) -> None:
    """group.instance.id makes a member static: one id, one member. With more than one instance every one would
    join under the same id, and the broker fences all but the last (so would every pod of a Deployment)."""
    instances = group.spec.instances
    cluster = project.cluster
    cluster_config = {props.canonical_name(k): k for k in cluster.spec.config} if cluster else {}
    if instances <= 1:
        return
    own = [k for k in group.spec.config if props.canonical_name(k) == "group.instance.id"]
    if own:
        where = group.locate("config", own[0], prefer="key")
    elif cluster is not None and "group.instance.id" in cluster_config:
        where = cluster.locate("config", cluster_config["group.instance.id"], prefer="key")
    else:
        return
    out.append(
        error(
            f"consumer group '{name}': group.instance.id is one static member id, but {instances} instances "
            "would all join with it; the broker fences all but one",
            where,
            hint="remove group.instance.id, or run one instance",
            code="contradiction",
        )
    )


def _check_concurrency(group: Declared, label: str, partitions: list[int]) -> list[Diagnostic]:
    """concurrency/ordering: settings that cannot take effect."""
    spec: ConsumerGroupSpec = group.spec
    out: list[Diagnostic] = []
    if spec.concurrency == 1 and group.written("ordering"):
        out.append(
            warning(
                f"{label}: ordering '{spec.ordering}' has no effect with concurrency 1 (one event at a time, "
                "in offset order)",
                group.locate("ordering", prefer="key"),
                hint="set concurrency above 1, or remove ordering",
                code="unused-setting",
            )
        )
    if (
        spec.concurrency > 1
        and spec.ordering == "partition"
        and partitions
        and spec.concurrency > sum(partitions)
    ):
        out.append(
            warning(
                f"{label}: concurrency {spec.concurrency} with ordering 'partition' runs at most {sum(partitions)} "
                f"events at once (one per partition of its topics)",
                group.locate("concurrency"),
                hint=f"lower concurrency to {sum(partitions)}, or use ordering: key",
                code="unused-setting",
            )
        )
    return out


def _check_emits(
    project: Declarations, name: str, group: Declared[ConsumerGroupSpec], out: list[Diagnostic]
) -> None:
    """Declared emits name declared topics; emitting into the group's own input loops every event."""
    spec = group.spec
    label = f"consumer group '{name}'"
    for i, topic in enumerate(spec.emits):
        if not _ref(out, group, ("emits", i), topic, "topics", project, f"{label}: emits"):
            continue
        if topic in spec.topics:
            out.append(
                warning(
                    f"{label} emits to '{topic}', one of its own input topics; every emitted event "
                    "comes back to the handler",
                    group.locate("emits", i),
                    hint="make sure the handler does not emit for the events it emitted",
                    code="emit-loop",
                )
            )


_QUANTITY_FACTORS = {
    "m": 1e-3, "": 1, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18,
    "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60,
}  # fmt: skip


def quantity_value(text: str) -> float:
    """A Kubernetes quantity as a number ("250m" → 0.25, "1Gi" → 2**30); the spec has checked its form."""
    number = text.rstrip("mkMGTPEi")
    return float(number) * _QUANTITY_FACTORS[text[len(number) :]]


def _check_deploy(
    project: Declarations, name: str, group: Declared[ConsumerGroupSpec], out: list[Diagnostic]
) -> None:
    """The Kubernetes export's settings: limits above requests, autoscaling within the partitions."""
    deploy = group.spec.deploy
    label = f"consumer group '{name}'"
    for resource in ("cpu", "memory"):
        request = getattr(deploy.resources.requests, resource)
        limit = getattr(deploy.resources.limits, resource)
        if request and limit and quantity_value(request) > quantity_value(limit):
            out.append(
                error(
                    f"{label}: deploy.resources.requests.{resource} ({request}) is above its limit ({limit})",
                    group.locate("deploy", "resources", "requests", resource),
                    code="invalid-value",
                )
            )
    scale = deploy.autoscale
    if scale is None:
        return
    partitions = [project.topics[t].spec.partitions for t in group.spec.topics if t in project.topics]
    if scale.max_replicas is not None and partitions and scale.max_replicas > max(partitions):
        out.append(
            error(
                f"{label}: deploy.autoscale.max_replicas is {scale.max_replicas} but the group reads at most "
                f"{max(partitions)} partitions; members beyond that would sit idle",
                group.locate("deploy", "autoscale", "max_replicas"),
                hint=f"set max_replicas to {max(partitions)} or fewer, or add partitions",
                code="idle-instances",
            )
        )
    ceiling = scale.max_replicas if scale.max_replicas is not None else max(partitions, default=1)
    if scale.min_replicas > ceiling:
        out.append(
            error(
                f"{label}: deploy.autoscale.min_replicas ({scale.min_replicas}) is above max_replicas ({ceiling})",
                group.locate("deploy", "autoscale", "min_replicas"),
                code="invalid-value",
            )
        )


def _check_cluster(project: Declarations, out: list[Diagnostic]) -> None:
    if project.cluster is None:
        return
    for key, value in project.cluster.spec.config.items():
        # Cluster-wide settings reach every client; check each against the kind of client it applies to.
        info = props.lookup(key)
        kind = {"P": "producer", "C": "consumer"}.get(info.scope, "admin") if info else "admin"
        problem, hint = props.check_client_property(key, value, kind)
        if problem:
            out.append(
                error(
                    f"cluster: {problem}",
                    project.cluster.locate("config", key, prefer="key"),
                    hint=hint,
                    code="client-config",
                )
            )
        elif props.canonical_name(key) in ("group.id", "metadata.broker.list"):
            # bootstrap.servers is librdkafka's alias of metadata.broker.list: match either spelling.
            instead = "the group name" if key == "group.id" else "bootstrap_servers"
            out.append(
                error(
                    f"cluster: config sets {key}; use {instead} instead",
                    project.cluster.locate("config", key, prefer="key"),
                    code="contradiction",
                )
            )
