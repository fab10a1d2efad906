"""No secret reaches an export's output: a scan of the serialized output for every secret value.

Which values are secret is known only after rendering and compiling, wherever they were written: a literal in
a file (on one line or as a multi-line YAML scalar), a `--var`, a `--values` file, or the environment through
env(). So instead of guessing from the files' text, the export takes

- every compiled librdkafka setting the property table marks secret (`Setting.secret`: sasl.password,
  ssl.key.password, sasl.username, ...), of the cluster, every producer and every consumer group;
- the value of every variable the templates read with env() that is a secret (export.environment), as the
  render saw it;

and refuses when any of them occurs anywhere in the text it is about to write. Values shorter than
MIN_SECRET_LENGTH are not scanned: "3" or "on" would match by chance everywhere.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from kpipe.errors import UsageError
from kpipe.export.environment import EnvVar

MIN_SECRET_LENGTH = 4


@dataclass(frozen=True)
class SecretValue:
    """A secret value and where it came from, for the message (which never shows the value)."""

    value: str
    origin: str


def secret_values(project: Any, env: Sequence[EnvVar], environ: Mapping[str, str]) -> list[SecretValue]:
    """The secret values of a loaded project: compiled secret settings, and secret env() variables' values in
    `environ` (the environment the files were rendered with)."""
    configs = [("cluster", project.cluster_client_config())]
    for name in project.producer_names():
        configs.append((f"producer '{name}'", project.producer_settings(name).client))
    for group in project.consumer_groups():
        configs.append((f"consumer group '{group.group_id}'", group.client))
        if group.producer_client is not None:
            configs.append((f"consumer group '{group.group_id}'", group.producer_client))
    out: dict[str, SecretValue] = {}
    for owner, config in configs:
        for setting in config.settings:
            if setting.secret and setting.value:
                where = f" at {setting.position}" if setting.position else ""
                out.setdefault(setting.value, SecretValue(setting.value, f"{setting.key} of {owner}{where}"))
    for var in env:
        value = environ.get(var.name)
        if var.secret and value:
            out.setdefault(value, SecretValue(value, f"env('{var.name}') ({var.positions[0]})"))
    return [s for s in out.values() if len(s.value) >= MIN_SECRET_LENGTH]


def refuse_secrets(outputs: Iterable[tuple[str, str]], secrets: Sequence[SecretValue]) -> None:
    """Refuse when a secret value occurs in any `(what, serialized text)` output, naming both (never the
    value)."""
    if not secrets:
        return
    for what, text in outputs:
        for secret in secrets:
            if secret.value in text:
                raise UsageError(
                    f"the secret value of {secret.origin} would be written into {what}; read it with "
                    "env('NAME') from a Secret (--set-env, --var and --values values are published), or keep "
                    "the files in the image with --files-in-image"
                )
