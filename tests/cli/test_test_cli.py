"""`kpipe test` by its exit codes and output: the example project's cases pass, a failing case shows expected and
actual side by side, an invalid case file is a positioned error, JUnit XML for CI, and no socket is opened."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from helpers import environment, kpipe

ROOT = Path(__file__).resolve().parents[2]
ORDER = (
    "{event_type: order.created, order_id: ord-9, customer_id: cust-1, status: created, total_amount: 1, "
    'timestamp: "2026-11-27T09:00:01Z"}'
)


@pytest.fixture(autouse=True)
def _in_repo(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    for name in ("KAFKA_BOOTSTRAP_SERVERS", "KPIPE_BOOTSTRAP_SERVERS", "KPIPE_DEBUG"):
        monkeypatch.delenv(name, raising=False)


def _cases(directory: Path, text: str) -> Path:
    """A case file in a copy of the example project at `directory`, which becomes the working directory."""
    for part in ("pipelines", "schemas"):
        if not (directory / part).exists():
            shutil.copytree(ROOT / part, directory / part, ignore=shutil.ignore_patterns("__pycache__"))
    os.chdir(directory)
    path = Path("cases.yaml")
    path.write_text(text, encoding="utf-8")
    return path


def test_the_example_projects_cases_pass() -> None:
    code, out, err = kpipe("test", "pipelines/", "--cases", "pipeline-tests/")
    assert code == 0, out + err
    lines = out.splitlines()
    assert lines and all(line.startswith("PASS ") for line in lines)
    assert "PASS a refused payment is retried, then dead-lettered with its reason" in lines
    assert err.startswith(f"{len(lines)} passed, 0 failed in ")


def test_a_failing_case_shows_expected_and_actual_side_by_side(tmp_path: Path) -> None:
    cases = _cases(
        tmp_path,
        "cases:\n"
        "  - name: passes\n"
        "    groups: [analytics]\n"
        f"    given: [{{topic: orders, event: {ORDER}}}]\n"
        "    expect: {handled: {analytics: 1}}\n"
        "  - name: fails\n"
        "    groups: [order-processors]\n"
        "    given: [{topic: orders, raw: 'not json', key: c-1}]\n"
        "    expect:\n"
        "      handled: {order-processors: 1}\n"
        "      dead_letters: {orders.dlq: [{error_type: handler}]}\n",
    )
    code, out, _ = kpipe("test", "pipelines/", "--cases", str(cases))
    assert code == 1
    assert out.splitlines()[:4] == [
        "PASS passes",
        "FAIL fails",
        f"  {cases}:10:35: handled.order-processors",
        "    expected: 1                          |  actual: 0",
    ]
    assert out.splitlines()[4] == f"  {cases}:11:35: dead_letters.orders.dlq[0]"
    assert out.splitlines()[5].startswith(
        '    expected: {"error_type": "handler"}  |  actual: {"error_type": "schema"'
    )


def test_an_invalid_given_event_fails_its_case_with_the_reason(tmp_path: Path) -> None:
    cases = _cases(
        tmp_path,
        "cases:\n  - name: bad event\n    given: [{topic: orders, event: {order_id: 1}}]\n    expect: {}\n",
    )
    code, out, _ = kpipe("test", "pipelines/", "--cases", str(cases))
    assert code == 1
    assert out.splitlines()[0] == "FAIL bad event"
    assert out.splitlines()[1].startswith(f"  error: {cases}:3:36: given[0]: invalid event for producer")


def test_a_case_file_with_a_control_character_is_an_error(tmp_path: Path) -> None:
    cases = _cases(tmp_path, "cases:\n  - name: x\x01\n    expect: {}\n")
    code, out, err = kpipe("test", "pipelines/", "--cases", str(cases))
    assert (code, out) == (1, "")
    assert err.splitlines()[0].startswith(f"{cases}: error: not a YAML file: ")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "cases:\n  - name: x\n    groups: [order-procesors]\n    expect: {}\n",
            [
                "{f}:3:14: error: case 'x': unknown consumer group 'order-procesors'",
                "  hint: did you mean 'order-processors'?",
            ],
        ),
        (
            "cases:\n  - name: x\n    given: [{topic: order, raw: x}]\n    expect: {topics: {orders.dql: []}}\n",
            [
                "{f}:3:21: error: case 'x': unknown topic 'order'",
                "  hint: did you mean 'orders'?",
                "{f}:4:23: error: case 'x': unknown topic 'orders.dql'",
                "  hint: did you mean 'orders.dlq'?",
            ],
        ),
        (
            "cases:\n  - name: x\n    expect:\n      handeld: {analytics: 1}\n",
            ["{f}:4:7: error: unknown field 'handeld'", "  hint: did you mean 'handled'?"],
        ),
        (
            "cases:\n  - name: x\n    given: [{topic: orders}]\n    expect: {}\n",
            [
                "{f}:3:13: error: cases.0.given.0: give exactly one of 'event' (checked against the schema) "
                "or 'raw' (bytes as text)"
            ],
        ),
    ],
    ids=["unknown-group", "unknown-topic", "unknown-field", "no-payload"],
)
def test_an_invalid_case_file_is_a_positioned_error(tmp_path: Path, text: str, expected: list[str]) -> None:
    cases = _cases(tmp_path, text)
    code, out, err = kpipe("test", "pipelines/", "--cases", str(cases))
    assert (code, out) == (1, "")
    assert err.splitlines()[:-1] == [line.format(f=cases) for line in expected]


def test_every_problem_of_a_case_file_at_once(tmp_path: Path) -> None:
    cases = _cases(
        tmp_path,
        "cases:\n  - name: x\n    expect:\n      handeld: {analytics: 1}\n"
        "  - name: y\n    given: [{topic: order, raw: x}]\n    expect: {}\n  - name: y\n    expect: {}\n",
    )
    code, out, err = kpipe("test", "pipelines/", "--cases", str(cases))
    assert (code, out) == (1, "")
    assert err.splitlines() == [
        f"{cases}:4:7: error: unknown field 'handeld'",
        "  hint: did you mean 'handled'?",
        f"{cases}:6:21: error: case 'y': unknown topic 'order'",
        "  hint: did you mean 'orders'?",
        f"{cases}:8:11: error: a case named 'y' is already defined at {cases}:5:11",
        "3 errors, 0 warnings",
    ]


def test_cases_takes_every_argument_up_to_the_next_option() -> None:
    code, out, _ = kpipe(
        "test",
        "pipelines/",
        "--cases",
        "pipeline-tests/users.yaml",
        "pipeline-tests/orders.yaml",
        "-k",
        "welcome",
    )
    assert (code, out) == (0, "PASS a new user gets a welcome mail\n")
    code, out, _ = kpipe("test", "--cases", "pipeline-tests/users.yaml", "--", "pipelines/")
    assert (code, out) == (0, "PASS a new user gets a welcome mail\n")


def test_k_selects_cases_by_name() -> None:
    code, out, _ = kpipe("test", "pipelines/", "--cases", "pipeline-tests/", "-k", "welcome")
    assert (code, out) == (0, "PASS a new user gets a welcome mail\n")
    code, _, err = kpipe("test", "pipelines/", "--cases", "pipeline-tests/", "-k", "nothing like it")
    assert (code, err) == (2, "error: no case name contains 'nothing like it'\n")


def test_a_case_file_outside_the_project_root_is_refused(tmp_path: Path) -> None:
    cases = tmp_path / "cases.yaml"
    cases.write_text("cases:\n  - name: x\n    expect: {}\n")
    code, _, err = kpipe("test", "pipelines/", "--cases", str(cases))
    assert code == 1
    assert "is outside the project root" in err


def test_junit_xml(tmp_path: Path) -> None:
    report = tmp_path / "report.xml"
    code, out, _ = kpipe(
        "test", "pipelines/", "--cases", "pipeline-tests/orders.yaml", "--format", "junit", "-o", str(report)
    )
    assert code == 0
    assert out.splitlines()[0].startswith("PASS ")
    root = ET.parse(report).getroot()
    assert root.tag == "testsuites"
    suite = root.find("testsuite")
    assert suite is not None and suite.get("name") == "pipeline-tests/orders.yaml"
    names = [case.get("name") for case in suite.iter("testcase")]
    assert len(names) == int(suite.get("tests", "0")) == int(root.get("tests", "0")) > 0
    assert root.get("failures") == "0" and not list(suite.iter("failure"))


def test_junit_xml_of_a_failure(tmp_path: Path) -> None:
    cases = _cases(
        tmp_path,
        'cases:\n  - name: "wrong \\x01 count"\n    groups: [analytics]\n'
        f"    given: [{{topic: orders, event: {ORDER}}}]\n    expect: {{handled: {{analytics: 2}}}}\n",
    )
    code, out, _ = kpipe("test", "pipelines/", "--cases", str(cases), "--format", "junit")
    assert code == 1
    root = ET.fromstring(out)
    failure = root.find("testsuite/testcase/failure")
    assert failure is not None
    assert root.find("testsuite/testcase").get("name") == "wrong \\x01 count"  # no raw control character
    assert "expected: 2" in (failure.text or "") and "actual: 1" in (failure.text or "")


NO_NETWORK = """\
import sys

def audit(event, args):
    if event.startswith(("socket.", "subprocess.", "os.fork", "os.posix_spawn", "os.exec", "os.system")):
        raise RuntimeError(f"kpipe test must not do {event}")

import confluent_kafka, confluent_kafka.admin

class Forbidden:
    def __init__(self, *args, **kwargs):
        raise RuntimeError("kpipe test must not create a librdkafka client")

confluent_kafka.Consumer = confluent_kafka.Producer = confluent_kafka.admin.AdminClient = Forbidden
sys.addaudithook(audit)
from kpipe.cli import main
main(sys.argv[1:])
"""


def test_kpipe_test_opens_no_socket_and_starts_no_process() -> None:
    """No Python socket, no subprocess (audit hooks), no librdkafka client (whose sockets Python cannot see)."""
    done = subprocess.run(
        [sys.executable, "-c", NO_NETWORK, "test", "pipelines/", "--cases", "pipeline-tests/"],
        capture_output=True, text=True, timeout=120, env=environment({}), cwd=ROOT,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "PASS" in done.stdout and "FAIL" not in done.stdout


@pytest.mark.skipif(shutil.which("strace") is None, reason="needs strace")
def test_kpipe_test_makes_no_socket_system_call(tmp_path: Path) -> None:
    """The same proof from outside, for every thread and library: strace sees no socket() call at all."""
    trace = tmp_path / "trace"
    command = [sys.executable, "-m", "kpipe", "test", "pipelines/", "--cases", "pipeline-tests/"]
    done = subprocess.run(
        ["strace", "-f", "-qq", "-e", "trace=socket,connect,execve", "-o", str(trace), *command],
        capture_output=True, text=True, timeout=120, env=environment({}), cwd=ROOT,
    )  # fmt: skip
    if not trace.exists() or "execve(" not in trace.read_text():
        pytest.skip(f"strace cannot trace here: {done.stderr.strip()[:200]}")
    assert done.returncode == 0, done.stdout + done.stderr
    calls = [line for line in trace.read_text().splitlines() if "socket(" in line or "connect(" in line]
    assert calls == []
    assert len([line for line in trace.read_text().splitlines() if "execve(" in line]) == 1  # python itself
