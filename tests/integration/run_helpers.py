"""`kpipe run` as a process on the session broker, for the tests that start it: a project whose handler records
what it handled to `$KPIPE_TEST_OUT/<pid>.jsonl`, events to feed it, the running process with its JSON log, and
its /healthz, /readyz and /metrics endpoints. (The `kpipe_run` fixture in conftest.py starts one and kills it
after the test.)"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path

from confluent_kafka import Producer
from prometheus_client.parser import text_string_to_metric_families

from helpers import environment, wait_for
from kpipe.local.broker import free_port

RECORDER = """\
import json, os, time

def record(event, ctx):
    delay = float(os.environ.get("KPIPE_TEST_DELAY_S") or 0)
    if delay:
        time.sleep(delay)  # a slow handler, so a worker can be killed with work left on its partitions
    if event.decode() == os.environ.get("KPIPE_TEST_HANG_ON"):
        open(os.path.join(os.environ["KPIPE_TEST_OUT"], f"hanging-{os.getpid()}"), "w").close()
        time.sleep(3600)  # a handler that hangs on this one event
    line = {"group": ctx.group, "pid": os.getpid(), "partition": ctx.partition, "offset": ctx.offset,
            "value": event.decode()}
    with open(os.path.join(os.environ["KPIPE_TEST_OUT"], f"{os.getpid()}.jsonl"), "a") as f:
        f.write(json.dumps(line) + "\\n")
"""

# Every call waits until the file "open" appears beside $KPIPE_TEST_OUT (at most 60 s): calls that hang until the
# test lets them finish.
GATED = """\
import os, time

def handle(event, ctx):
    gate = os.path.join(os.environ["KPIPE_TEST_OUT"], "..", "open")
    deadline = time.monotonic() + 60
    while not os.path.exists(gate) and time.monotonic() < deadline:
        time.sleep(0.01)
"""

SUPERVISOR = "kpipe.runtime.supervisor"


def write_project(
    directory: Path, bootstrap: str, topic: str, partitions: int, groups: dict[str, int]
) -> Path:
    """One topic read by recording groups (group -> instances), committing in batches of 5 or every 200 ms."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "recorder.py").write_text(RECORDER)
    consumers = "".join(
        f"""\
  {group}:
    topics: [{topic}]
    handler: recorder:record
    instances: {instances}
    commit: {{strategy: batch, batch_size: 5, interval_ms: 200}}
"""
        for group, instances in groups.items()
    )
    (directory / "project.yaml").write_text(
        f"""\
cluster:
  bootstrap_servers: "{bootstrap}"
topics:
  {topic}:
    partitions: {partitions}
    replication_factor: 1
consumers:
{consumers}"""
    )
    return directory


def write_group_project(
    directory: Path,
    bootstrap: str,
    topic: str,
    group: str,
    *,
    partitions: int = 1,
    handler: str = "recorder:record",
    source: str = RECORDER,
    extra_topics: tuple[str, ...] = (),
    **settings: str | int,
) -> Path:
    """One group on `topic` (and one-partition `extra_topics`, a dead-letter topic say) whose handler is
    `handler` ("module:function"), the module's text being `source`; `settings` are the group's other keys, each
    value written as YAML (`concurrency=2`, `on_error="{action: skip}"`)."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{handler.split(':')[0]}.py").write_text(source)
    topics = f"  {topic}: {{partitions: {partitions}, replication_factor: 1}}\n" + "".join(
        f"  {extra}: {{partitions: 1, replication_factor: 1}}\n" for extra in extra_topics
    )
    (directory / "project.yaml").write_text(
        f'cluster:\n  bootstrap_servers: "{bootstrap}"\n'
        f"topics:\n{topics}"
        f"consumers:\n  {group}:\n    topics: [{topic}]\n    handler: {handler}\n"
        + "".join(f"    {key}: {value}\n" for key, value in settings.items())
    )
    return directory


def write_gated_project(directory: Path, bootstrap: str, topic: str, group: str, concurrency: int) -> Path:
    """One group on a one-partition `topic` whose `concurrency` calls at a time wait for the gate (GATED)."""
    return write_group_project(
        directory, bootstrap, topic, group, handler="gated:handle", source=GATED, concurrency=concurrency
    )


def produce(bootstrap: str, topic: str, count: int, partitions: int, keys: int = 0) -> list[str]:
    """Send values "event-<i>" round-robin over the partitions; with `keys`, keyed "k<i % keys>" and placed by
    the default partitioner instead (so each key's events are on one partition, in order)."""
    producer = Producer({"bootstrap.servers": bootstrap})
    values = [f"event-{i}" for i in range(count)]
    for i, value in enumerate(values):
        if keys:
            producer.produce(topic, value.encode(), key=f"k{i % keys}".encode())
        else:
            producer.produce(topic, value.encode(), partition=i % partitions)
    assert producer.flush(10) == 0
    return values


def get(url: str) -> tuple[int, str]:
    """(status, body) of a GET; (0, "") while nothing listens."""
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except OSError:
        return 0, ""  # not listening (yet)


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def sample(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


class KpipeRun:
    """`kpipe run --log-format json` as a process, with its log and what its handlers recorded.

    Its stderr goes to `directory/kpipe-run.log`; handlers write under `directory/handled`
    ($KPIPE_TEST_OUT). With `metrics`, it serves /metrics, /healthz and /readyz on a free port at `base`.
    `env` overrides variables of this process's environment (None removes one).
    """

    def __init__(
        self,
        directory: Path,
        project: Path | str,
        consumer_config: Mapping[str, str | int],
        *args: str,
        env: Mapping[str, str | None] | None = None,
        cwd: Path | None = None,
        metrics: bool = False,
    ):
        self.out = directory / "handled"
        self.out.mkdir(parents=True)
        self.log_path = directory / "kpipe-run.log"
        self.port = free_port() if metrics else None
        self.base = f"http://127.0.0.1:{self.port}"
        options = [f"-X{key}={value}" for key, value in consumer_config.items()]
        if self.port is not None:
            options += ["--metrics-port", str(self.port)]
        with self.log_path.open("w") as log_file:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", "from kpipe.cli import main; main()", "run", str(project)]
                + ["--log-format", "json", "--shutdown-timeout", "20", *options, *args],
                stderr=log_file,
                env=environment({"KPIPE_TEST_OUT": str(self.out), **(env or {})}),
                cwd=cwd,
                start_new_session=True,  # its own process group, like a job in a terminal
            )

    def log(self) -> str:
        return self.log_path.read_text()

    def records(self) -> list[dict]:
        return [json.loads(line) for line in self.log().splitlines() if line.startswith("{")]

    def supervisor_messages(self) -> list[str]:
        return [r["msg"] for r in self.records() if r["logger"] == SUPERVISOR]

    def group_messages(self, group: str) -> list[str]:
        """What the workers of `group` logged."""
        return [r["msg"] for r in self.records() if r.get("group") == group]

    def assignments(self) -> dict[int, set[int]]:
        """Each worker pid's current partitions, from its latest 'assigned'/'revoked' log lines."""
        current: dict[int, set[int]] = {}
        for r in self.records():
            if r["logger"] == SUPERVISOR:
                continue
            partitions = {int(p) for p in re.findall(r"\[(\d+)\]", r["msg"])}
            if r["msg"].startswith("assigned "):
                current[r["pid"]] = current.get(r["pid"], set()) | partitions
            elif r["msg"].startswith("revoked "):
                current[r["pid"]] = current.get(r["pid"], set()) - partitions
        return {pid: parts for pid, parts in current.items() if parts}

    def handled(self) -> list[dict]:
        lines = []
        for path in self.out.glob("*.jsonl"):
            lines += [json.loads(line) for line in path.read_text().splitlines() if line.endswith("}")]
        return lines

    def wait_handled(self, count: int, timeout: float = 60) -> list[dict]:
        """Wait until the handlers recorded at least `count` events; return what they recorded."""
        return wait_for(lambda: len(self.handled()) >= count and self.handled(), timeout, message=self.log)

    # --- the metrics server (with metrics=True) ---

    def get(self, path: str) -> tuple[int, str]:
        return get(self.base + path)

    def scrape(self) -> Samples:
        """Every sample of /metrics, parsed by prometheus_client: (name, sorted labels) -> value."""
        code, text = self.get("/metrics")
        assert code == 200, text
        return {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
        }

    def not_ready_reasons(self) -> list[str]:
        code, body = self.get("/readyz")
        return json.loads(body).get("reasons", []) if code == 503 else []

    def wait_ready(self, timeout: float = 60) -> None:
        wait_for(lambda: self.get("/readyz")[0] == 200, timeout=timeout, message=self.log)

    # --- the end ---

    def stop(self, timeout: float = 40, *, ctrl_c: bool = False) -> int:
        """SIGTERM to `kpipe run`, or with ctrl_c SIGINT to its whole process group, as a terminal does."""
        if ctrl_c:
            os.killpg(self.proc.pid, signal.SIGINT)
        else:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise AssertionError(f"kpipe run did not stop within {timeout} s:\n{self.log()}") from None

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
