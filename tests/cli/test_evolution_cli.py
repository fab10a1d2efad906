"""`kpipe validate --against`: a real git repository with two commits, checked through the CLI."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from helpers import kpipe

ROOT = Path(__file__).resolve().parents[2]


def _git(repo: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.email=ci@kpipe.test", "-c", "user.name=kpipe", *args],
        cwd=repo,
        check=True,
        capture_output=True,
    )


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    shutil.copytree(ROOT / "pipelines", tmp_path / "pipelines", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "schemas", tmp_path / "schemas")
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "add", "-A")
    _git(tmp_path, "commit", "-qm", "v1")
    return tmp_path


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new))


def test_compatible_change_passes(repo: Path) -> None:
    # Relaxing a bound is backward compatible: new consumers read every old event.
    _edit(repo / "schemas/user_created.schema.yaml", "title: UserCreated", "title: UserCreated (v2)")
    _git(repo, "commit", "-qam", "v2")
    result = kpipe("validate", "pipelines/", "--against", "HEAD~1", cwd=repo, process=True)
    assert result.code == 0, result.err
    assert result.err.strip().endswith("0 errors, 0 warnings in 5 files")


def test_removed_enum_value_is_reported_with_position_rule_and_fix(repo: Path) -> None:
    _edit(
        repo / "schemas/order_event.schema.yaml",
        "enum: [created, paid, shipped, delivered]",
        "enum: [created, paid, shipped]",
    )
    _git(repo, "commit", "-qam", "v2")
    result = kpipe("validate", "pipelines/", "--against", "HEAD~1", cwd=repo, process=True)
    assert result.code == 1
    lines = result.err.splitlines()
    assert lines[0] == (
        "schemas/order_event.schema.yaml:27:11: error: schema 'OrderEvent' is not BACKWARD compatible: status: "
        "old events may carry \"delivered\" in 'status', which the new schema does not allow "
        "[ENUM_ARRAY_NARROWED]; it would be safe only with the producers deployed first, which BACKWARD does "
        "not assume"
    )
    assert lines[1] == '  hint: keep "delivered" in the enum'
    assert lines[-1] == "1 error, 0 warnings in 5 files"


def test_uncommitted_change_against_head_and_key_removal(repo: Path) -> None:
    _edit(repo / "pipelines/users.yaml", "    key: user_id\n", "")
    result = kpipe("validate", "pipelines/", "--against", "HEAD", "--format", "json", cwd=repo, process=True)
    assert result.code == 1
    import json

    report = json.loads(result.out)
    assert [d["code"] for d in report["diagnostics"]] == ["key-removed"]
    assert report["diagnostics"][0]["file"] == "pipelines/users.yaml"


def test_none_mode_allows_anything(repo: Path) -> None:
    _edit(
        repo / "pipelines/cluster.yaml",
        "OrderEvent: ../schemas/order_event.schema.yaml",
        "OrderEvent: {file: ../schemas/order_event.schema.yaml, compatibility: NONE}",
    )
    _git(repo, "commit", "-qam", "mode NONE")
    _edit(
        repo / "schemas/order_event.schema.yaml",
        "enum: [created, paid, shipped, delivered]",
        "enum: [created]",
    )
    result = kpipe("validate", "pipelines/", "--against", "HEAD", cwd=repo, process=True)
    assert result.code == 0, result.err


def test_against_a_directory(repo: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    previous = tmp_path_factory.mktemp("previous")
    shutil.copytree(repo / "pipelines", previous / "pipelines")
    shutil.copytree(repo / "schemas", previous / "schemas")
    _edit(
        repo / "schemas/order_event.schema.yaml",
        "    type: number\n    exclusiveMinimum: 0",
        "    type: integer\n    exclusiveMinimum: 0",
    )
    result = kpipe("validate", "pipelines/", "--against", str(previous), cwd=repo, process=True)
    assert result.code == 1
    assert "TYPE_NARROWED" in result.err


def test_unknown_ref_is_a_usage_error(repo: Path) -> None:
    result = kpipe("validate", "pipelines/", "--against", "no-such-branch", cwd=repo, process=True)
    assert result.code == 2
    assert result.err.strip() == "error: --against no-such-branch: unknown git ref (nor is it a directory)"


def test_pydantic_model_schema_change_is_checked_through_its_json_schema(repo: Path) -> None:
    # A schema given as a pydantic model: the previous version must be imported from the previous files,
    # not from the module the current run already imported.
    (repo / "pipelines" / "example_app" / "events.py").write_text(
        "from pydantic import BaseModel\n\n\nclass Refund(BaseModel):\n    order_id: str\n    amount: float\n"
    )
    (repo / "pipelines" / "refunds.yaml").write_text(
        "schemas:\n  Refund: {model: 'example_app.events:Refund'}\n"
        "topics:\n  refunds: {partitions: 1, key: order_id, schema: Refund}\n"
    )
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "refunds")
    # Narrowing amount from float to int: new consumers would reject old events such as 9.99.
    _edit(repo / "pipelines/example_app/events.py", "amount: float", "amount: int")
    # Without --import-code no model module is imported: the change is not compared, and a warning says so.
    result = kpipe("validate", "pipelines/", "--against", "HEAD", cwd=repo, process=True)
    assert result.code == 0, result.err
    assert (
        "schema 'Refund' is a pydantic model; its changes are compared only with --import-code" in result.err
    )
    result = kpipe("validate", "pipelines/", "--against", "HEAD", "--import-code", cwd=repo, process=True)
    assert result.code == 1, result.err
    assert "schema 'Refund' is not BACKWARD compatible: amount:" in result.err
    assert "[TYPE_NARROWED]" in result.err


def test_a_partition_decrease_is_reported_by_validate_against(repo: Path) -> None:
    _edit(repo / "pipelines/orders.yaml", "partitions: {{ orders_partitions | default(3) }}", "partitions: 2")
    _git(repo, "commit", "-qam", "v2")
    result = kpipe("validate", "pipelines/", "--against", "HEAD~1", cwd=repo, process=True)
    assert result.code == 1
    lines = result.err.splitlines()
    assert lines[0].endswith(
        "error: topic 'orders': partitions decreased from 3 to 2; Kafka cannot remove partitions from a topic, "
        "so `kpipe apply` will refuse this"
    )
    assert lines[0].startswith("pipelines/orders.yaml:")
    assert lines[1] == "  hint: keep partitions: 3, or declare a topic under a new name to have fewer"


def test_adding_an_optional_property_to_the_example_passes_the_default_mode(repo: Path) -> None:
    # The seed's promise, "add fields without breaking consumers": the example's schemas are closed for it.
    with (repo / "schemas/order_event.schema.yaml").open("a") as schema:
        schema.write("  coupon_code:\n    description: A coupon applied to the order.\n    type: string\n")
    _git(repo, "commit", "-qam", "v2")
    result = kpipe("validate", "pipelines/", "--against", "HEAD~1", cwd=repo, process=True)
    assert result.code == 0, result.err


def test_an_open_schema_s_hint_names_the_change_that_passes(repo: Path) -> None:
    # Only a schema that says additionalProperties: true is open: its producers keep undeclared properties.
    _edit(
        repo / "schemas/order_event.schema.yaml",
        "additionalProperties: false\n",
        "additionalProperties: true\n",
    )
    _git(repo, "commit", "-qam", "open it")
    with (repo / "schemas/order_event.schema.yaml").open("a") as schema:
        schema.write("  coupon_code:\n    type: string\n")
    result = kpipe("validate", "pipelines/", "--against", "HEAD", cwd=repo, process=True)
    assert result.code == 1
    lines = result.err.splitlines()
    assert "[OPTIONAL_PROPERTY_ADDED_TO_OPEN_CONTENT_MODEL]" in lines[0]
    assert lines[1] == (
        "  hint: the old schema says additionalProperties: true, so its producers kept undeclared properties; if "
        "none was ever sent, drop additionalProperties: true (kpipe then holds the schema to what it declares) as "
        "a change of its own under compatibility: NONE; or declare 'coupon_code' as {}"
    )


PAYMENT = """\
type: object
required: [id, amount]
properties:
  id: {type: string}
  amount: {type: number}
"""


def _payments_repo(tmp_path: Path, writer: str) -> Path:
    """The newcomer's project: an open schema written from the docs (no additionalProperties), version 1."""
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    (tmp_path / "pipelines").mkdir()
    (tmp_path / "schemas").mkdir()
    (tmp_path / "schemas" / "payment.yaml").write_text(PAYMENT)
    (tmp_path / "pipelines" / "payments.yaml").write_text(
        "schemas:\n  Payment: {file: ../schemas/payment.yaml}\n"
        "topics:\n  payments: {partitions: 1, schema: Payment, key: id}\n" + writer
    )
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "add", "-A")
    _git(tmp_path, "commit", "-qm", "v1")
    return tmp_path


def test_adding_an_optional_property_to_a_schema_from_the_docs_passes(tmp_path: Path) -> None:
    repo = _payments_repo(tmp_path, "producers:\n  api: {topic: payments}\n")
    _edit(
        repo / "schemas/payment.yaml",
        "  amount: {type: number}\n",
        "  amount: {type: number}\n  note: {type: string}\n",
    )
    result = kpipe("validate", "pipelines/", "--against", "HEAD", cwd=repo, process=True)
    assert (result.code, result.err.strip()) == (0, "0 errors, 0 warnings in 2 files")


def test_an_addition_to_a_topic_no_kpipe_producer_writes_is_warned_about(tmp_path: Path) -> None:
    repo = _payments_repo(tmp_path, "")
    _edit(
        repo / "schemas/payment.yaml",
        "  amount: {type: number}\n",
        "  amount: {type: number}\n  note: {type: string}\n",
    )
    result = kpipe("validate", "pipelines/", "--against", "HEAD", cwd=repo, process=True)
    assert result.code == 0, result.err
    assert result.err.splitlines()[0] == (
        "pipelines/payments.yaml:2:3: warning: schema 'Payment' adds 'note', which is BACKWARD compatible because "
        "kpipe's producers write only declared properties; no producer or consumer group of this project writes "
        "'payments', so kpipe cannot vouch that earlier events lack it"
    )


def test_removing_a_required_property_or_changing_a_type_fails_and_says_no_order_is_safe(
    tmp_path: Path,
) -> None:
    repo = _payments_repo(tmp_path, "producers:\n  api: {topic: payments}\n")
    _edit(repo / "schemas/payment.yaml", "required: [id, amount]", "required: [id]")
    _edit(repo / "schemas/payment.yaml", "  amount: {type: number}\n", "")
    result = kpipe("validate", "pipelines/", "--against", "HEAD", cwd=repo, process=True)
    assert result.code == 1
    first, hint = result.err.splitlines()[:2]
    assert first.startswith("schemas/payment.yaml:")
    assert (
        "schema 'Payment' is not BACKWARD compatible: amount: 'amount' is missing from the new schema"
        in first
    )
    assert first.endswith(
        "[PROPERTY_REMOVED_FROM_CLOSED_CONTENT_MODEL]; unsafe whichever side is deployed first"
    )
    assert hint == (
        "  hint: keep 'amount' declared and mark it deprecated: true (a required one made optional first, which "
        "is BACKWARD compatible: deploy the consumers first)"
    )
    _git(repo, "checkout", "-q", "schemas")
    _edit(repo / "schemas/payment.yaml", "amount: {type: number}", "amount: {type: string}")
    result = kpipe("validate", "pipelines/", "--against", "HEAD", cwd=repo, process=True)
    assert result.code == 1
    assert result.err.splitlines()[0].endswith("[TYPE_CHANGED]; unsafe whichever side is deployed first")
