"""`kpipe export kubernetes`: plain manifests that run each consumer group as a Deployment.

    ConfigMap   the pipeline, schema and values files (left out with files_in_image)
    ConfigMap   the non-secret environment variables given with --set-env
    Deployment  per group: one worker per pod (`kpipe run --group G --instances 1`), replicas = instances,
                probes on the health endpoints, Prometheus annotations, a grace period above the shutdown
                timeout, resources from `deploy:`, maxSurge 0 where order matters
    PDB         per group: at most one member down at a time by a voluntary disruption
    Job         `kpipe apply --yes`, to run before the Deployments (optionally as a Helm or Argo CD hook)
    ScaledObject per group with `deploy.autoscale` (or all, with keda): KEDA's Kafka scaler on the group's lag

Environment variables come from static analysis of the templates (export.environment): secret ones from a
named Secret (never generated, never given a value here), the others from the env ConfigMap. Pure: returns
plain data; the caller writes it.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kpipe.compilation.compiled import ConsumerGroupSettings
from kpipe.errors import UsageError
from kpipe.export.environment import EnvVar
from kpipe.export.sources import ProjectFile, below, project_files, project_root, refuse_literal_secrets
from kpipe.export.topology import Topology, partitions_read
from kpipe.model import librdkafka as props
from kpipe.observe import DEFAULT_METRICS_PORT

# The port `kpipe run --metrics-port` serves /metrics, /healthz and /readyz on in the manifests.
METRICS_PORT = DEFAULT_METRICS_PORT
# The pod outlives `kpipe run --shutdown-timeout` by this much, so the workers' own deadline fires first.
GRACE_MARGIN_S = 15
DEFAULT_REQUESTS = {"cpu": "100m", "memory": "256Mi"}
DEFAULT_LIMITS = {"memory": "512Mi"}
APP_DIR = "/app"
RUN_AS_USER = 10001
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
# A hook Job runs before the release's ordinary objects exist, so the ConfigMaps it mounts are hooks too, made
# first (lower weight / wave) and kept afterwards for the Deployments (replaced only by the next run's).
CONFIG_HOOK_ANNOTATIONS = {
    "helm": {
        "helm.sh/hook": "pre-install,pre-upgrade",
        "helm.sh/hook-weight": "-10",
        "helm.sh/hook-delete-policy": "before-hook-creation",
    },
    "argo": {
        "argocd.argoproj.io/hook": "PreSync",
        "argocd.argoproj.io/hook-delete-policy": "BeforeHookCreation",
        "argocd.argoproj.io/sync-wave": "-1",
    },
}


@dataclass
class Options:
    image: str
    namespace: str | None = None
    name_prefix: str = ""
    files_in_image: bool = False
    set_env: Mapping[str, str] = field(default_factory=dict)
    secret_name: str | None = None
    shutdown_timeout: float = 30.0
    keda: bool = False
    hook: str | None = None  # None | "helm" | "argo"
    # `kpipe run` / `kpipe apply` arguments naming the project, relative to the project root.
    project_args: tuple[str, ...] = ("pipelines",)


def dns_name(name: str, limit: int = 63) -> str:
    """`name` as a DNS-1123 label; a name that had to change gets a short hash so two never collide."""
    label = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-") or "x"
    if label == name and len(label) <= limit:
        return label
    digest = hashlib.sha256(name.encode()).hexdigest()[:6]
    return f"{label[: limit - 7].rstrip('-')}-{digest}"


class Manifests:
    """Builds every object for one project. `objects()` returns them in the order they should be applied."""

    def __init__(
        self,
        topology: Topology,
        spec: Any,
        env: Sequence[EnvVar],
        files: Sequence[ProjectFile],
        options: Options,
    ):
        self.topology = topology
        self.spec = spec
        self.env = list(env)
        self.files = list(files)
        self.options = options
        self.prefix = dns_name(options.name_prefix, 40) + "-" if options.name_prefix else ""
        self.files_config_map = f"{self.prefix}kpipe-files"
        self.env_config_map = f"{self.prefix}kpipe-env"
        self.secret_name = options.secret_name or f"{self.prefix}kpipe-secrets"
        self._check_env()

    # -- checks --------------------------------------------------------------------------------------------
    def _check_env(self) -> None:
        by_name = {v.name: v for v in self.env}
        for name in self.options.set_env:
            var = by_name.get(name)
            if (var is not None and var.secret) or props.is_secret(name):
                why = (
                    f"it feeds {', '.join(var.keys)}" if var is not None and var.keys else "its name says so"
                )
                raise UsageError(
                    f"--set-env {name}: {name} is a secret ({why}); it comes from Secret "
                    f"'{self.secret_name}', never from a manifest"
                )
        for var in self.env:
            if not var.secret and not var.has_default and var.name not in self.options.set_env:
                where = var.positions[0]
                raise UsageError(
                    f"{where}: env('{var.name}') has no default and no value: pass --set-env {var.name}=VALUE "
                    f"(or give it a default in the template)"
                )

    # -- objects -------------------------------------------------------------------------------------------
    def objects(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        if not self.options.files_in_image:
            out.append(self.files_config_map_object())
        if self.options.set_env:
            out.append(self.env_config_map_object())
        out.append(self.apply_job())
        for group in self.topology.groups:
            out.append(self.deployment(group))
            out.append(self.disruption_budget(group))
            scaled = self.scaled_object(group)
            if scaled is not None:
                out.append(scaled)
        return out

    def _metadata(self, name: str, component: str, group: str | None = None) -> dict[str, Any]:
        metadata: dict[str, Any] = {"name": name}
        if self.options.namespace:
            metadata["namespace"] = self.options.namespace
        metadata["labels"] = self._labels(component, group)
        if group is not None:
            metadata["annotations"] = {"kpipe.dev/consumer-group": group}
        return metadata

    def _labels(self, component: str, group: str | None = None) -> dict[str, str]:
        labels = {"app.kubernetes.io/name": "kpipe", "app.kubernetes.io/component": component}
        if self.options.name_prefix:
            labels["app.kubernetes.io/instance"] = self.prefix.rstrip("-")
        if group is not None:
            labels["kpipe.dev/group"] = dns_name(group)
        return labels

    def _hooked(self, metadata: dict[str, Any]) -> dict[str, Any]:
        if self.options.hook:
            metadata["annotations"] = dict(CONFIG_HOOK_ANNOTATIONS[self.options.hook])
        return metadata

    def _config_key(self, relative: str) -> str:
        key = re.sub(r"[^A-Za-z0-9._-]", "_", relative.replace("/", "__"))
        return key[-253:]

    def files_config_map_object(self) -> dict[str, Any]:
        data = {}
        for f in self.files:
            data[self._config_key(f.relative)] = f.path.read_text(encoding="utf-8")
        return {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": self._hooked(self._metadata(self.files_config_map, "files")),
            "data": dict(sorted(data.items())),
        }

    def env_config_map_object(self) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": self._hooked(self._metadata(self.env_config_map, "environment")),
            "data": dict(sorted(self.options.set_env.items())),
        }

    def _files_digest(self) -> str:
        digest = hashlib.sha256()
        for f in sorted(self.files, key=lambda f: f.relative):
            digest.update(f.relative.encode() + b"\0" + f.path.read_bytes() + b"\0")
        for name, value in sorted(self.options.set_env.items()):
            digest.update(f"{name}={value}\0".encode())
        return digest.hexdigest()[:16]

    def _env(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for var in self.env:
            if var.secret:
                ref = {"name": self.secret_name, "key": var.name}
                if var.has_default:
                    ref["optional"] = True
                out.append({"name": var.name, "valueFrom": {"secretKeyRef": ref}})
            elif var.name in self.options.set_env:
                out.append(
                    {
                        "name": var.name,
                        "valueFrom": {"configMapKeyRef": {"name": self.env_config_map, "key": var.name}},
                    }
                )
            # Neither secret nor set: the template's own default applies.
        # Extra --set-env values no template reads still reach the process (handlers may read them).
        known = {v.name for v in self.env}
        for name in sorted(set(self.options.set_env) - known):
            out.append(
                {"name": name, "valueFrom": {"configMapKeyRef": {"name": self.env_config_map, "key": name}}}
            )
        out.append({"name": "PYTHONUNBUFFERED", "value": "1"})
        return out

    def _volumes(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        volumes: list[dict[str, Any]] = [{"name": "tmp", "emptyDir": {}}]
        mounts: list[dict[str, Any]] = [{"name": "tmp", "mountPath": "/tmp"}]
        if not self.options.files_in_image:
            volumes.append({"name": "kpipe-files", "configMap": {"name": self.files_config_map}})
            # One subPath mount per file: the files land where the image's handlers expect them, beside the
            # project's own code, without hiding the rest of its directory.
            for f in sorted(self.files, key=lambda f: f.relative):
                mounts.append(
                    {
                        "name": "kpipe-files",
                        "mountPath": f"{APP_DIR}/{f.relative}",
                        "subPath": self._config_key(f.relative),
                        "readOnly": True,
                    }
                )
        return volumes, mounts

    def _container(self, args: list[str], resources: dict[str, Any], mounts: list[dict[str, Any]]) -> dict:
        return {
            "name": "kpipe",
            "image": self.options.image,
            "imagePullPolicy": "IfNotPresent",
            "args": args,
            "workingDir": APP_DIR,
            "env": self._env(),
            "resources": resources,
            "securityContext": {
                "allowPrivilegeEscalation": False,
                "readOnlyRootFilesystem": True,
                "capabilities": {"drop": ["ALL"]},
            },
            "volumeMounts": mounts,
        }

    def _pod_security(self) -> dict[str, Any]:
        return {
            "runAsNonRoot": True,
            "runAsUser": RUN_AS_USER,
            "runAsGroup": RUN_AS_USER,
            "seccompProfile": {"type": "RuntimeDefault"},
        }

    def _resources(self, group: str) -> dict[str, Any]:
        declared = self.spec.consumers[group].spec.deploy.resources
        requests = {**DEFAULT_REQUESTS, **declared.requests.model_dump(exclude_none=True)}
        limits = {**DEFAULT_LIMITS, **declared.limits.model_dump(exclude_none=True)}
        return {"requests": requests, "limits": limits}

    def _shutdown(self) -> str:
        timeout = self.options.shutdown_timeout
        return str(int(timeout)) if float(timeout).is_integer() else str(timeout)

    def deployment(self, group: ConsumerGroupSettings) -> dict[str, Any]:
        name = f"{self.prefix}{dns_name(group.group_id)}"
        labels = self._labels("consumer-group", group.group_id)
        selector = {"app.kubernetes.io/name": "kpipe", "kpipe.dev/group": labels["kpipe.dev/group"]}
        if "app.kubernetes.io/instance" in labels:
            selector["app.kubernetes.io/instance"] = labels["app.kubernetes.io/instance"]
        args = [
            "run",
            *self.options.project_args,
            "--group",
            group.group_id,
            "--instances",
            "1",
            "--shutdown-timeout",
            self._shutdown(),
            "--metrics-port",
            str(METRICS_PORT),
            "--metrics-host",
            "0.0.0.0",
            "--log-format",
            "json",
        ]
        volumes, mounts = self._volumes()
        container = self._container(args, self._resources(group.group_id), mounts)
        container["ports"] = [{"name": "metrics", "containerPort": METRICS_PORT, "protocol": "TCP"}]
        container["startupProbe"] = {
            "httpGet": {"path": "/healthz", "port": "metrics"},
            "periodSeconds": 2,
            "failureThreshold": 30,
        }
        container["livenessProbe"] = {
            "httpGet": {"path": "/healthz", "port": "metrics"},
            "periodSeconds": 10,
            "timeoutSeconds": 2,
            "failureThreshold": 3,
        }
        container["readinessProbe"] = {
            "httpGet": {"path": "/readyz", "port": "metrics"},
            "periodSeconds": 5,
            "timeoutSeconds": 2,
            "failureThreshold": 2,
        }
        # Order per key (or partition) matters: never run an old and a new member side by side for the same
        # partitions; replace one pod at a time instead.
        ordered = self.spec.consumers[group.group_id].spec.ordering != "none"
        rolling = {"maxSurge": 0, "maxUnavailable": 1} if ordered else {"maxSurge": 1, "maxUnavailable": 0}
        annotations = {
            "prometheus.io/scrape": "true",
            "prometheus.io/port": str(METRICS_PORT),
            "prometheus.io/path": "/metrics",
            "kpipe.dev/consumer-group": group.group_id,
        }
        if not self.options.files_in_image:
            # A change to the files or environment changes the pod template, which rolls the Deployment.
            annotations["kpipe.dev/files-sha256"] = self._files_digest()
        return {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": self._metadata(name, "consumer-group", group.group_id),
            "spec": {
                **({} if self._autoscaled(group) else {"replicas": group.instances}),
                "selector": {"matchLabels": selector},
                "strategy": {"type": "RollingUpdate", "rollingUpdate": rolling},
                "template": {
                    "metadata": {"labels": labels, "annotations": annotations},
                    "spec": {
                        "terminationGracePeriodSeconds": int(self.options.shutdown_timeout) + GRACE_MARGIN_S,
                        "securityContext": self._pod_security(),
                        "containers": [container],
                        "volumes": volumes,
                    },
                },
            },
        }

    def disruption_budget(self, group: ConsumerGroupSettings) -> dict[str, Any]:
        deployment = self.deployment(group)
        return {
            "apiVersion": "policy/v1",
            "kind": "PodDisruptionBudget",
            "metadata": self._metadata(deployment["metadata"]["name"], "consumer-group", group.group_id),
            "spec": {"maxUnavailable": 1, "selector": deployment["spec"]["selector"]},
        }

    def apply_job(self) -> dict[str, Any]:
        volumes, mounts = self._volumes()
        container = self._container(
            ["apply", *self.options.project_args, "--yes"],
            {"requests": {"cpu": "50m", "memory": "128Mi"}, "limits": {"memory": "256Mi"}},
            mounts,
        )
        metadata = self._metadata(f"{self.prefix}kpipe-apply", "apply")
        if self.options.hook:
            metadata["annotations"] = dict(HOOK_ANNOTATIONS[self.options.hook])
        return {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": metadata,
            "spec": {
                "backoffLimit": 3,
                "ttlSecondsAfterFinished": 3600,
                "template": {
                    "metadata": {"labels": self._labels("apply")},
                    "spec": {
                        "restartPolicy": "Never",
                        "securityContext": self._pod_security(),
                        "containers": [container],
                        "volumes": volumes,
                    },
                },
            },
        }

    def _secure(self) -> bool:
        config = {k.lower(): str(v).upper() for k, v in self.spec.cluster_spec.config.items()}
        return config.get("security.protocol", "PLAINTEXT") in SECURE_PROTOCOLS

    def _autoscaled(self, group: ConsumerGroupSettings) -> bool:
        return self.options.keda or self.spec.consumers[group.group_id].spec.deploy.autoscale is not None

    def scaled_object(self, group: ConsumerGroupSettings) -> dict[str, Any] | None:
        """KEDA's ScaledObject for the group, or None. When there is one, the Deployment names no replicas:
        KEDA owns the count, and re-applying the manifests must not reset it to `instances`."""
        if not self._autoscaled(group):
            return None
        autoscale = self.spec.consumers[group.group_id].spec.deploy.autoscale
        partitions = partitions_read(self.topology, group)
        min_replicas = autoscale.min_replicas if autoscale else 1
        max_replicas = autoscale.max_replicas if autoscale and autoscale.max_replicas else partitions
        lag = autoscale.lag_threshold if autoscale else 100
        bootstrap = group.client.get("bootstrap.servers") or ""
        triggers = []
        for topic in group.topics:
            trigger: dict[str, Any] = {
                "type": "kafka",
                "metadata": {
                    "bootstrapServers": bootstrap,
                    "consumerGroup": group.group_id,
                    "topic": topic,
                    "lagThreshold": str(lag),
                    "offsetResetPolicy": "earliest"
                    if group.client.get("auto.offset.reset") == "earliest"
                    else "latest",
                    # Never scale past the partitions: members beyond them would sit idle.
                    "allowIdleConsumers": "false",
                },
            }
            if self._secure():
                # KEDA reads SASL/TLS credentials from a TriggerAuthentication you create beside the Secret.
                trigger["authenticationRef"] = {"name": f"{self.prefix}kpipe-keda-auth"}
            triggers.append(trigger)
        deployment = self.deployment(group)
        return {
            "apiVersion": "keda.sh/v1alpha1",
            "kind": "ScaledObject",
            "metadata": self._metadata(deployment["metadata"]["name"], "autoscaler", group.group_id),
            "spec": {
                "scaleTargetRef": {"name": deployment["metadata"]["name"]},
                "minReplicaCount": min_replicas,
                "maxReplicaCount": max_replicas,
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
    root = root or project_root(paths[0])
    bootstrap = project.cluster_client_config().get("bootstrap.servers")
    if bootstrap == "local":
        raise UsageError(
            "the files' bootstrap_servers is 'local' (kpipe's embedded broker), which pods cannot reach; "
            "give the real brokers, e.g. --set-env KAFKA_BOOTSTRAP_SERVERS=kafka:9092 where the files read "
            "env('KAFKA_BOOTSTRAP_SERVERS')"
        )
    if not options.files_in_image:
        refuse_literal_secrets(project.spec)
    files = project_files([*project.files, *project.inspection.schema_sources.values(), *values_files], root)
    args = [p.resolve().relative_to(root).as_posix() or "." for p in paths if below(p, root)]
    if len(args) != len(paths):
        raise UsageError(f"every project path must lie below the project root {root}")
    for value_file in values_files:
        args += ["--values", value_file.resolve().relative_to(root).as_posix()]
    for name, value in variables.items():
        args += ["--var", f"{name}={value}"]
    options.project_args = tuple(args)
    return Manifests(topology, project.spec, env, files, options).objects()
