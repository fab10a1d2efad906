"""`kpipe export kubernetes`: plain manifests that run each consumer group as a Deployment.

    ConfigMap   the pipeline, schema and values files (left out with files_in_image)
    ConfigMap   the non-secret environment variables given with --set-env
    Job         `kpipe apply --yes`, to run before the Deployments (optionally as a Helm or Argo CD hook)
    Deployment  per group: one worker per pod (`kpipe run --group G --instances 1`), replicas = instances,
                probes on the health endpoints, Prometheus annotations, a grace period above the shutdown
                timeout, resources from `deploy:`, maxSurge 0 where order matters
    PDB         per group: at most one member down at a time by a voluntary disruption
    ScaledObject per group with `deploy.autoscale` (or all, with keda): KEDA's Kafka scaler on the group's lag

Environment variables come from static analysis of the templates (export.environment): secret ones from a
named Secret (never generated, never given a value here), the others from the env ConfigMap. The parts every
pod shares are in export.pods. Pure: returns plain data; the caller writes it.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from kpipe.compilation.compiled import DEFAULT_METRICS_PORT, ConsumerGroupSettings
from kpipe.errors import UsageError
from kpipe.export.environment import EnvVar
from kpipe.export.pods import Options, Pods, dns_name
from kpipe.export.sources import project_files
from kpipe.export.topology import Topology, partitions_read
from kpipe.loading.files import ProjectFiles, project_root
from kpipe.model import librdkafka as props

__all__ = [
    "Options",
    "check_environment",
    "default_warnings",
    "dns_name",
    "manifests",
    "render_environment",
]

# The port `kpipe run --metrics-port` serves /metrics, /healthz and /readyz on in the manifests.
METRICS_PORT = DEFAULT_METRICS_PORT
# The pod outlives `kpipe run --shutdown-timeout` by this much, so the workers' own deadline fires first.
GRACE_MARGIN_S = 15
DEFAULT_REQUESTS = {"cpu": "100m", "memory": "256Mi"}
DEFAULT_LIMITS = {"memory": "512Mi"}
SECURE_PROTOCOLS = ("SSL", "SASL_SSL", "SASL_PLAINTEXT")
HOOK_ANNOTATIONS = {
    "helm": {
        "helm.sh/hook": "pre-install,pre-upgrade",
        "helm.sh/hook-weight": "-5",
        "helm.sh/hook-delete-policy": "before-hook-creation,hook-succeeded",
    },
    "argo": {
        "argocd.argoproj.io/hook": "PreSync",
        "argocd.argoproj.io/hook-delete-policy": "BeforeHookCreation",
    },
}
# An environment variable name a container and a ConfigMap key both accept.
ENV_NAME = re.compile(r"[A-Za-z_.-][A-Za-z0-9_.-]{0,252}")
# What a secret variable is rendered with at export time: the pods get the real value from the Secret.
SECRET_PLACEHOLDER = "kpipe-export-placeholder-{name}"


def check_environment(env: Sequence[EnvVar], set_env: Mapping[str, str], secret_name: str) -> None:
    """Refuse a secret given with --set-env, and a variable the pods would not have (no default, no value)."""
    for var in env:
        if not ENV_NAME.fullmatch(var.name):
            # The name is the files' text: not repeated here, only where it is.
            raise UsageError(
                f"{var.positions[0]}: env() reads a variable no pod can have: a name holds only letters, "
                "digits, '_', '.' and '-', and does not start with a digit"
            )
    by_name = {v.name: v for v in env}
    for name in set_env:
        var = by_name.get(name)
        if (var is not None and var.secret) or props.is_secret(name):
            why = f"it feeds {', '.join(var.keys)}" if var is not None and var.keys else "its name says so"
            raise UsageError(
                f"--set-env {name}: {name} is a secret ({why}); it comes from Secret "
                f"'{secret_name}', never from a manifest"
            )
    for var in env:
        if not var.secret and not var.has_default and var.name not in set_env:
            raise UsageError(
                f"{var.positions[0]}: env('{var.name}') has no default and no value: pass --set-env "
                f"{var.name}=VALUE (or give it a default in the template)"
            )


def default_warnings(env: Sequence[EnvVar], set_env: Mapping[str, str]) -> list[str]:
    """One warning per variable the pods will read with the template's own default, because the export was
    given no --set-env value for it: a default such as `localhost:9092` is rarely what a cluster needs, and the
    export renders with it too (the groups, partitions and KEDA's brokers come from that render). Names the
    variable and where it is read, never a value."""
    return [
        f"{var.positions[0]}: warning: env('{var.name}') has no --set-env value: the manifests and the pods "
        f"use its default from the files; pass --set-env {var.name}=VALUE if the cluster needs another"
        for var in env
        if not var.secret and var.has_default and var.name not in set_env
    ]


def render_environment(env: Sequence[EnvVar], set_env: Mapping[str, str]) -> dict[str, str | None]:
    """What each variable the templates read is when the export renders them, as the pods would: the --set-env
    value, a placeholder for a secret, else unset (None: the template's default applies). Never the exporting
    shell's own value."""
    out: dict[str, str | None] = {}
    for var in env:
        if var.name in set_env:
            out[var.name] = set_env[var.name]
        elif var.secret:
            out[var.name] = SECRET_PLACEHOLDER.format(name=var.name)
        else:
            out[var.name] = None
    return out


class Manifests:
    """Builds every object for one project. `objects()` returns them in the order they should be applied."""

    def __init__(self, topology: Topology, declarations: Any, pods: Pods):
        self.topology = topology
        self.declarations = declarations
        self.pods = pods
        self.options = pods.options

    def objects(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        if not self.options.files_in_image:
            out.append(self.files_config_map())
        if self.options.set_env:
            out.append(self.env_config_map())
        out.append(self.apply_job())
        for group in self.topology.groups:
            deployment = self.deployment(group)
            out.append(deployment)
            out.append(self.disruption_budget(group, deployment))
            if self._autoscaled(group):
                out.append(self.scaled_object(group, deployment))
        return out

    def files_config_map(self) -> dict[str, Any]:
        return self._config_map(self.pods.files_config_map, "files", self.pods.files_data)

    def env_config_map(self) -> dict[str, Any]:
        return self._config_map(self.pods.env_config_map, "environment", self.pods.env_data)

    def _config_map(self, name: str, component: str, data: Mapping[str, str]) -> dict[str, Any]:
        # Its name is its content's hash, so its content never changes under that name: immutable.
        return {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": self.pods.hooked(self.pods.metadata(name, component)),
            "immutable": True,
            "data": dict(sorted(data.items())),
        }

    def _resources(self, group: str) -> dict[str, Any]:
        declared = self.declarations.consumers[group].spec.deploy.resources
        requests = {**DEFAULT_REQUESTS, **declared.requests.model_dump(exclude_none=True)}
        limits = {**DEFAULT_LIMITS, **declared.limits.model_dump(exclude_none=True)}
        return {"requests": requests, "limits": limits}

    def _run_args(self, group: str) -> list[str]:
        timeout = self.options.shutdown_timeout
        shutdown = str(int(timeout)) if float(timeout).is_integer() else str(timeout)
        return [
            "run", *self.options.project_args, "--group", group, "--instances", "1",
            "--shutdown-timeout", shutdown, "--metrics-port", str(METRICS_PORT),
            "--metrics-host", "0.0.0.0", "--log-format", "json",
        ]  # fmt: skip

    def _probed_container(self, group: str, mounts: list[dict[str, Any]]) -> dict[str, Any]:
        container = self.pods.container(self._run_args(group), self._resources(group), mounts)
        container["ports"] = [{"name": "metrics", "containerPort": METRICS_PORT, "protocol": "TCP"}]
        health = {"path": "/healthz", "port": "metrics"}
        container["startupProbe"] = {"httpGet": health, "periodSeconds": 2, "failureThreshold": 30}
        container["livenessProbe"] = {
            "httpGet": dict(health), "periodSeconds": 10, "timeoutSeconds": 2, "failureThreshold": 3,
        }  # fmt: skip
        container["readinessProbe"] = {
            "httpGet": {"path": "/readyz", "port": "metrics"},
            "periodSeconds": 5,
            "timeoutSeconds": 2,
            "failureThreshold": 2,
        }
        return container

    def deployment(self, group: ConsumerGroupSettings) -> dict[str, Any]:
        name = f"{self.pods.prefix}{dns_name(group.group_id)}"
        labels = self.pods.labels("consumer-group", group.group_id)
        selector = {"app.kubernetes.io/name": "kpipe", "kpipe.dev/group": labels["kpipe.dev/group"]}
        if "app.kubernetes.io/instance" in labels:
            selector["app.kubernetes.io/instance"] = labels["app.kubernetes.io/instance"]
        volumes, mounts = self.pods.volumes()
        container = self._probed_container(group.group_id, mounts)
        # Order per key (or partition) matters: never run an old and a new member side by side for the same
        # partitions; replace one pod at a time instead.
        ordered = self.declarations.consumers[group.group_id].spec.ordering != "none"
        rolling = {"maxSurge": 0, "maxUnavailable": 1} if ordered else {"maxSurge": 1, "maxUnavailable": 0}
        annotations = {
            "prometheus.io/scrape": "true",
            "prometheus.io/port": str(METRICS_PORT),
            "prometheus.io/path": "/metrics",
            "kpipe.dev/consumer-group": group.group_id,
        }
        if not self.options.files_in_image:
            # A change to the files or environment changes the pod template, which rolls the Deployment.
            annotations["kpipe.dev/files-sha256"] = self.pods.files_digest()
        grace = int(self.options.shutdown_timeout) + GRACE_MARGIN_S
        return {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": self.pods.metadata(name, "consumer-group", group.group_id),
            "spec": {
                **({} if self._autoscaled(group) else {"replicas": group.instances}),
                "selector": {"matchLabels": selector},
                "strategy": {"type": "RollingUpdate", "rollingUpdate": rolling},
                "template": {
                    "metadata": {"labels": labels, "annotations": annotations},
                    "spec": self.pods.pod_spec(container, volumes, terminationGracePeriodSeconds=grace),
                },
            },
        }

    def disruption_budget(self, group: ConsumerGroupSettings, deployment: dict[str, Any]) -> dict[str, Any]:
        return {
            "apiVersion": "policy/v1",
            "kind": "PodDisruptionBudget",
            "metadata": self.pods.metadata(deployment["metadata"]["name"], "consumer-group", group.group_id),
            "spec": {"maxUnavailable": 1, "selector": deployment["spec"]["selector"]},
        }

    def job_name(self) -> str:
        """A Job's pod template is immutable: re-applying one with a new image fails while the old Job exists.
        So outside a hook (which deletes the old Job first) the name carries a suffix that changes whenever
        the image, the files or the environment do: every such deploy gets a Job of its own, and an unchanged
        one re-applies as a no-op. --job-suffix names it instead."""
        base = f"{self.pods.prefix}kpipe-apply"
        suffix = self.options.job_suffix
        if suffix is None and not self.options.hook:
            seed = self.options.image + "\0" + " ".join(self.options.project_args) + "\0"
            seed += self.pods.files_digest()
            suffix = hashlib.sha256(seed.encode()).hexdigest()[:8]
        return dns_name(f"{base}-{suffix}") if suffix else base

    def apply_job(self) -> dict[str, Any]:
        volumes, mounts = self.pods.volumes()
        container = self.pods.container(
            ["apply", *self.options.project_args, "--yes"],
            {"requests": {"cpu": "50m", "memory": "128Mi"}, "limits": {"memory": "256Mi"}},
            mounts,
        )
        metadata = self.pods.metadata(self.job_name(), "apply")
        if self.options.hook:
            metadata["annotations"] = dict(HOOK_ANNOTATIONS[self.options.hook])
        return {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": metadata,
            "spec": {
                # `kpipe apply` refuses what it will not do unasked (exit 4): a failed Job is a plan to read
                # (`kpipe plan`), not to retry. Re-run it by re-applying once the cause is fixed.
                "backoffLimit": 0,
                "ttlSecondsAfterFinished": 3600,
                "template": {
                    "metadata": {"labels": self.pods.labels("apply")},
                    "spec": self.pods.pod_spec(container, volumes, restartPolicy="Never"),
                },
            },
        }

    def _secure(self) -> bool:
        config = {k.lower(): str(v).upper() for k, v in self.declarations.cluster_spec.config.items()}
        return config.get("security.protocol", "PLAINTEXT") in SECURE_PROTOCOLS

    def _autoscaled(self, group: ConsumerGroupSettings) -> bool:
        return (
            self.options.keda or self.declarations.consumers[group.group_id].spec.deploy.autoscale is not None
        )

    def _bootstrap_servers(self, group: ConsumerGroupSettings) -> dict[str, str]:
        """Where KEDA finds the brokers: the pods' own variable (`bootstrapServersFromEnv`, which KEDA reads from
        the Deployment's container, here from the env ConfigMap) when the rendered bootstrap.servers is exactly
        a --set-env value, so KEDA and the workers always agree; else the rendered value, as the files say."""
        rendered = group.client.get("bootstrap.servers") or ""
        matching = [
            var
            for var in self.pods.env
            if not var.secret and rendered and self.options.set_env.get(var.name) == rendered
        ]
        matching.sort(key=lambda v: not any("bootstrap" in key for key in v.keys))
        if matching:
            return {"bootstrapServersFromEnv": matching[0].name}
        return {"bootstrapServers": rendered}

    def scaled_object(self, group: ConsumerGroupSettings, deployment: dict[str, Any]) -> dict[str, Any]:
        """KEDA's ScaledObject for the group. The Deployment then names no replicas: KEDA owns the count, and
        re-applying the manifests must not reset it to `instances`."""
        autoscale = self.declarations.consumers[group.group_id].spec.deploy.autoscale
        partitions = partitions_read(self.topology, group)
        most = autoscale.max_replicas if autoscale and autoscale.max_replicas else partitions
        if most > 1 and group.client.get("group.instance.id"):
            # One static member id for every pod: the broker would fence all but one.
            raise UsageError(
                f"consumer group '{group.group_id}' sets group.instance.id, one static member id, but KEDA "
                f"may run up to {most} pods of it, which would all join with it; remove group.instance.id "
                "or do not autoscale the group"
            )
        lag = autoscale.lag_threshold if autoscale else 100
        reset = "earliest" if group.client.get("auto.offset.reset") == "earliest" else "latest"
        triggers = []
        for topic in group.topics:
            # Never scale past the partitions (allowIdleConsumers): members beyond them would sit idle.
            metadata = {
                **self._bootstrap_servers(group),
                "consumerGroup": group.group_id,
                "topic": topic,
                "lagThreshold": str(lag),
                "offsetResetPolicy": reset,
                "allowIdleConsumers": "false",
            }
            trigger: dict[str, Any] = {"type": "kafka", "metadata": metadata}
            if self._secure():
                # KEDA reads SASL/TLS credentials from a TriggerAuthentication you create beside the Secret.
                trigger["authenticationRef"] = {"name": f"{self.pods.prefix}kpipe-keda-auth"}
            triggers.append(trigger)
        name = deployment["metadata"]["name"]
        return {
            "apiVersion": "keda.sh/v1alpha1",
            "kind": "ScaledObject",
            "metadata": self.pods.metadata(name, "autoscaler", group.group_id),
            "spec": {
                "scaleTargetRef": {"name": name},
                "minReplicaCount": autoscale.min_replicas if autoscale else 1,
                "maxReplicaCount": autoscale.max_replicas
                if autoscale and autoscale.max_replicas
                else partitions,
                "triggers": triggers,
            },
        }


def manifests(
    project: Any,
    topology: Topology,
    env: Sequence[EnvVar],
    paths: Sequence[Path],
    values_files: Sequence[Path],
    variables: Mapping[str, str],
    options: Options,
    root: Path | None = None,
) -> list[dict[str, Any]]:
    """Every object for a loaded project; `paths`, `values_files` and `variables` are what the pods are
    given too, so they load exactly the project that was exported."""
    root = root or project_root(paths[:1])
    bootstrap = project.cluster_client_config().get("bootstrap.servers")
    if bootstrap == "local":
        raise UsageError(
            "the files' bootstrap_servers is 'local' (kpipe's embedded broker), which pods cannot reach; "
            "give the real brokers, e.g. --set-env KAFKA_BOOTSTRAP_SERVERS=kafka:9092 where the files read "
            "env('KAFKA_BOOTSTRAP_SERVERS')"
        )
    files = project_files([*project.files, *project.inspection.schema_sources.values(), *values_files], root)
    args = [p.resolve().relative_to(root).as_posix() or "." for p in paths if ProjectFiles(root).inside(p)]
    if len(args) != len(paths):
        raise UsageError(f"every project path must lie below the project root {root}")
    for value_file in values_files:
        args += ["--values", value_file.resolve().relative_to(root).as_posix()]
    for name, value in variables.items():
        args += ["--var", f"{name}={value}"]
    options.project_args = tuple(args)
    pods = Pods(env, files, options)
    check_environment(env, options.set_env, pods.secret_name)
    return Manifests(topology, project.declarations, pods).objects()
