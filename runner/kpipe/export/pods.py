"""The parts every kpipe pod shares, for export.kubernetes: names, labels, the environment, the file mounts,
the container and its security context. Pure: plain data."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from kpipe.export.environment import EnvVar
from kpipe.export.sources import ProjectFile

APP_DIR = "/app"
RUN_AS_USER = 10001
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
    # The apply Job's name ends in this; None: derived from the image and the files (see apply_job).
    job_suffix: str | None = None
    # `kpipe run` / `kpipe apply` arguments naming the project, relative to the project root.
    project_args: tuple[str, ...] = ("pipelines",)


def dns_name(name: str, limit: int = 63) -> str:
    """`name` as a DNS-1123 label; a name that had to change gets a short hash so two never collide."""
    label = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-") or "x"
    if label == name and len(label) <= limit:
        return label
    digest = hashlib.sha256(name.encode()).hexdigest()[:6]
    return f"{label[: limit - 7].rstrip('-')}-{digest}"


def content_hash(data: Mapping[str, str]) -> str:
    """A ConfigMap name suffix that changes whenever its data does (10 hex digits, as kustomize's)."""
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:10]


def config_key(relative: str) -> str:
    """A ConfigMap key for a file below the project root. A path that had to change (a character a key cannot
    hold, or too long) gets a short hash of itself, so `a b/x` and `a_b/x` never share a key."""
    plain = relative.replace("/", "__")
    key = re.sub(r"[^A-Za-z0-9._-]", "_", plain)
    if key == plain and len(key) <= 253:
        return key
    digest = hashlib.sha256(relative.encode()).hexdigest()[:8]
    return f"{digest}-{key[-244:]}"


class Pods:
    """Names and pod parts for one project's objects."""

    def __init__(self, env: Sequence[EnvVar], files: Sequence[ProjectFile], options: Options):
        self.env = list(env)
        self.files = sorted(files, key=lambda f: f.relative)
        self.options = options
        self.prefix = dns_name(options.name_prefix, 40) + "-" if options.name_prefix else ""
        self.files_data = {config_key(f.relative): f.path.read_text(encoding="utf-8") for f in self.files}
        self.env_data = dict(sorted(options.set_env.items()))
        # Named by their content, like kustomize's configMapGenerator: a new export makes new ConfigMaps and
        # leaves the old ones alone, so a pod of the old ReplicaSet that restarts during a rollout still reads
        # the files and environment it was made with, never the new ones.
        self.files_config_map = f"{self.prefix}kpipe-files-{content_hash(self.files_data)}"
        self.env_config_map = f"{self.prefix}kpipe-env-{content_hash(self.env_data)}"
        self.secret_name = options.secret_name or f"{self.prefix}kpipe-secrets"

    def metadata(self, name: str, component: str, group: str | None = None) -> dict[str, Any]:
        metadata: dict[str, Any] = {"name": name}
        if self.options.namespace:
            metadata["namespace"] = self.options.namespace
        metadata["labels"] = self.labels(component, group)
        if group is not None:
            metadata["annotations"] = {"kpipe.dev/consumer-group": group}
        return metadata

    def labels(self, component: str, group: str | None = None) -> dict[str, str]:
        labels = {"app.kubernetes.io/name": "kpipe", "app.kubernetes.io/component": component}
        if self.options.name_prefix:
            labels["app.kubernetes.io/instance"] = self.prefix.rstrip("-")
        if group is not None:
            labels["kpipe.dev/group"] = dns_name(group)
        return labels

    def hooked(self, metadata: dict[str, Any]) -> dict[str, Any]:
        if self.options.hook:
            metadata["annotations"] = dict(CONFIG_HOOK_ANNOTATIONS[self.options.hook])
        return metadata

    def files_digest(self) -> str:
        """Changes whenever the files or the --set-env values do."""
        digest = hashlib.sha256()
        for f in self.files:
            digest.update(f.relative.encode() + b"\0" + f.path.read_bytes() + b"\0")
        for name, value in sorted(self.options.set_env.items()):
            digest.update(f"{name}={value}\0".encode())
        return digest.hexdigest()[:16]

    def env_list(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for var in self.env:
            if var.secret:
                ref = {"name": self.secret_name, "key": var.name}
                if var.has_default:
                    ref["optional"] = True
                out.append({"name": var.name, "valueFrom": {"secretKeyRef": ref}})
            elif var.name in self.options.set_env:
                out.append(self._from_env_config_map(var.name))
            # Neither secret nor set: the template's own default applies.
        # Extra --set-env values no template reads still reach the process (handlers may read them).
        known = {v.name for v in self.env}
        out += [self._from_env_config_map(name) for name in sorted(set(self.options.set_env) - known)]
        out.append({"name": "PYTHONUNBUFFERED", "value": "1"})
        return out

    def _from_env_config_map(self, name: str) -> dict[str, Any]:
        return {"name": name, "valueFrom": {"configMapKeyRef": {"name": self.env_config_map, "key": name}}}

    def volumes(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        volumes: list[dict[str, Any]] = [{"name": "tmp", "emptyDir": {}}]
        mounts: list[dict[str, Any]] = [{"name": "tmp", "mountPath": "/tmp"}]
        if not self.options.files_in_image:
            volumes.append({"name": "kpipe-files", "configMap": {"name": self.files_config_map}})
            # One subPath mount per file: the files land where the image's handlers expect them, beside the
            # project's own code, without hiding the rest of its directory.
            for f in self.files:
                mounts.append(
                    {
                        "name": "kpipe-files",
                        "mountPath": f"{APP_DIR}/{f.relative}",
                        "subPath": config_key(f.relative),
                        "readOnly": True,
                    }
                )
        return volumes, mounts

    def container(self, args: list[str], resources: dict[str, Any], mounts: list[dict[str, Any]]) -> dict:
        return {
            "name": "kpipe",
            "image": self.options.image,
            "imagePullPolicy": "IfNotPresent",
            "args": args,
            "workingDir": APP_DIR,
            "env": self.env_list(),
            "resources": resources,
            "securityContext": {
                "allowPrivilegeEscalation": False,
                "readOnlyRootFilesystem": True,
                "capabilities": {"drop": ["ALL"]},
            },
            "volumeMounts": mounts,
        }

    def pod_spec(self, container: dict[str, Any], volumes: list[dict[str, Any]], **extra: Any) -> dict:
        return {
            **extra,
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": RUN_AS_USER,
                "runAsGroup": RUN_AS_USER,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "containers": [container],
            "volumes": volumes,
        }
