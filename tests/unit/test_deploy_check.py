"""The `deploy:` section: its model (quantities) and the check rules across it and the topics."""

from __future__ import annotations

from builders import assemble_texts
from kpipe.check.rules import check_project, quantity_value

BASE = "topics:\n  t: {partitions: 3}\nconsumers:\n  g:\n    topics: [t]\n    handler: m:f\n    deploy:\n"


def _diagnostics(deploy: str) -> list[str]:
    spec, problems = assemble_texts(BASE + deploy)
    return [d.message for d in problems + check_project(spec, {})]


def test_quantities() -> None:
    assert quantity_value("250m") == 0.25
    assert quantity_value("2") == 2
    assert quantity_value("1Gi") == 2**30
    assert quantity_value("1G") == 10**9


def test_a_valid_deploy_section() -> None:
    assert _diagnostics("      resources: {requests: {cpu: 0.5}, limits: {cpu: 1, memory: 1Gi}}\n"
                        "      autoscale: {min_replicas: 0, max_replicas: 3}\n") == []  # fmt: skip


def test_deploy_rules() -> None:
    assert _diagnostics("      resources: {limits: {memory: lots}}\n") == [
        "consumer group 'g': 'deploy.resources.limits.memory': 'lots' is not a Kubernetes quantity "
        "(e.g. 250m, 0.5, 512Mi, 1Gi)"
    ]
    assert _diagnostics("      resources: {requests: {memory: 2Gi}, limits: {memory: 1Gi}}\n") == [
        "consumer group 'g': deploy.resources.requests.memory (2Gi) is above its limit (1Gi)"
    ]
    assert _diagnostics("      autoscale: {max_replicas: 4}\n") == [
        "consumer group 'g': deploy.autoscale.max_replicas is 4 but the group reads at most 3 partitions; "
        "members beyond that would sit idle"
    ]
    assert _diagnostics("      autoscale: {min_replicas: 4}\n") == [
        "consumer group 'g': deploy.autoscale.min_replicas (4) is above max_replicas (3)"
    ]
