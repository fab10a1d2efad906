"""Issue 20.2: no value of any environment variable reaches an output, whole or transformed.

The attacker's files read variables the project never mentions otherwise (GITHUB_TOKEN, AWS_SECRET_ACCESS_KEY:
the canaries every hostile run holds, see hostile.CANARIES) and transform them every way Jinja allows, then put
them where kpipe quotes, prints or writes them: descriptions (render, exports), client settings (explain), names
and typed fields (diagnostics). run_kpipe fails on any piece of a canary in stdout or stderr; exported files are
read back and checked the same way.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from hostile import CANARIES, assert_no_secret, run_kpipe

# Each transformation of a variable X, as a Jinja expression. At least 15 (issue 20.2d).
TRANSFORMATIONS = {
    "slice": "X[1:]",
    "middle": "X[3:9]",
    "every-other": "X[::2]",
    "reverse": "X|reverse",
    "upper": "X|upper",
    "lower": "X|lower",
    "title": "X|title",
    "capitalize": "X|capitalize",
    "list-join": "X|list|join('.')",
    "sorted": "X|list|sort|join",
    "unique": "X|unique|join",
    "replace": "X|replace('_', '-')",
    "format-filter": "'<%s>'|format(X)",
    "str-format": "'<{}>'.format(X)",
    "concat": "'a' ~ X ~ 'b'",
    "center": "X|center(60)",
    "wordwrap": "X|wordwrap(5)",
    "first": "X|first",
    "last": "X|last",
    "tojson": "X|tojson",
    "string": "X|string",
    "urlencode": "X|urlencode",
    "truncate": "X|truncate(12)",
    "split": "X.split('_')|join(' ')",
    "batch": "X|batch(4)|map('join')|join('-')",
    "for-loop": "X|map('upper')|join",
    "encode": "X.encode('utf-8')",
    "pprint": "X|pprint",
    "int": "X|int",
    "length": "X|length",
}
VARIABLES = ("GITHUB_TOKEN", "AWS_SECRET_ACCESS_KEY")


def _expression(transformation: str, variable: str) -> str:
    # As a JSON string, which YAML reads as a string whatever the transformation produced.
    return "{{ (" + transformation.replace("X", f"env('{variable}')") + ")|string|tojson }}"


def _all_transformations() -> list[tuple[str, str]]:
    return [
        (f"{name}-{i}", _expression(t, v))
        for name, t in TRANSFORMATIONS.items()
        for i, v in enumerate(VARIABLES)
    ]


def valid_project(root: Path) -> None:
    """A valid project that writes every transformation into descriptions and a producer's client.id."""
    topics = "".join(
        f"  t-{label}:\n    partitions: 1\n    description: {expression}\n"
        for label, expression in _all_transformations()
    )
    client_ids = {label: expression for label, expression in _all_transformations()}
    producers = "".join(
        f"  p-{label}:\n    topic: t-{label}\n    config:\n      client.id: {expression}\n"
        for label, expression in client_ids.items()
    )
    groups = (
        "consumers:\n  readers:\n    topics: [t-slice-0]\n    handler: app.handlers:handle\n"
        "    description: {{ env('GITHUB_TOKEN') }}\n"
    )
    (root / "pipelines" / "p.yaml").write_text(
        "cluster:\n  bootstrap_servers: \"{{ env('KAFKA_HOST') }}:9092\"\n"
        f"topics:\n{topics}producers:\n{producers}{groups}"
    )
    (root / "app").mkdir(exist_ok=True)
    (root / "app" / "__init__.py").write_text("")
    (root / "app" / "handlers.py").write_text("def handle(event, ctx):\n    pass\n")


def invalid_project(root: Path) -> None:
    """Every transformation where validate quotes it back: a topic name, a typed field, a client setting."""
    entries = "".join(
        f"  {expression}:\n    partitions: {expression}\n    replication_factor: {expression}\n"
        for _, expression in _all_transformations()
    )
    producer = "".join(
        f"  p{i}:\n    topic: nowhere\n    config:\n      linger.ms: {expression}\n      acks: {expression}\n"
        for i, (_, expression) in enumerate(_all_transformations())
    )
    (root / "pipelines" / "p.yaml").write_text(f"topics:\n{entries}producers:\n{producer}")


COMMANDS = [
    ("validate", "text"),
    ("validate", "json"),
    ("validate", "github"),
    ("render", None),
    ("explain", "text"),
    ("explain", "json"),
    ("export-asyncapi", None),
    ("export-graph-mermaid", None),
    ("export-graph-dot", None),
    ("export-dockerfile", None),
    ("export-kubernetes", None),
]


def _args(command: str, fmt: str | None, out: Path) -> list[str]:
    if command == "validate":
        return ["validate", "pipelines/", "--format", fmt or "text"]
    if command == "render":
        return ["render", "pipelines/"]
    if command == "explain":
        return ["explain", "p-reverse-0", "pipelines/", "--format", fmt or "text"]
    if command == "export-asyncapi":
        return ["export", "asyncapi", "pipelines/", "-o", str(out)]
    if command.startswith("export-graph"):
        return ["export", "graph", "pipelines/", "--format", command.rsplit("-", 1)[1], "-o", str(out)]
    if command == "export-dockerfile":
        # --kpipe: this project names no source for kpipe, which the image must install.
        return ["export", "dockerfile", "pipelines/", "--kpipe", "kpipe @ file:///src/kpipe", "-o", str(out)]
    # The pods get what the command line says (the secrets: from a Secret), never what this shell holds.
    given = ["--set-env=KAFKA_HOST=kafka.svc", "--set-env=GITHUB_TOKEN=given-on-the-command-line"]
    return ["export", "kubernetes", "pipelines/", "--image", "registry/app:1", *given, "-o", str(out)]


@pytest.mark.parametrize(("command", "fmt"), COMMANDS)
def test_no_transformation_of_an_env_value_reaches_an_output(
    project: Path, tmp_path: Path, command: str, fmt: str | None
) -> None:
    valid_project(project)
    out = tmp_path / "exported"
    result = run_kpipe(project, *_args(command, fmt, out), env={"KAFKA_HOST": "kafka-1.internal"}, seconds=60)
    if command == "export-asyncapi":
        # AsyncAPI documents refuse a secret-looking variable's token in a description: no leak either way.
        assert result.code == 2 and "would be written into the AsyncAPI document" in result.err, result.text
    else:
        assert result.code == 0, result.text
    assert "kafka-1.internal" not in result.text
    written = [out] if out.is_file() else sorted(f for f in out.rglob("*") if f.is_file())
    assert written or command in ("validate", "render", "explain", "export-asyncapi")
    for path in written:
        text = path.read_text(errors="replace")
        assert_no_secret(text, CANARIES)
        assert "kafka-1.internal" not in text


def test_render_names_a_whole_env_value_and_shows_a_transformed_one_as_opaque(project: Path) -> None:
    valid_project(project)
    result = run_kpipe(project, "render", "pipelines/", env={"KAFKA_HOST": "kafka-1.internal"})
    assert result.code == 0, result.text
    assert "description: env('GITHUB_TOKEN')" in result.out
    assert "bootstrap_servers: \"env('KAFKA_HOST'):9092\"" in result.out


@pytest.mark.parametrize("fmt", ["text", "json", "github"])
def test_no_transformation_is_quoted_back_by_a_diagnostic(project: Path, fmt: str) -> None:
    invalid_project(project)
    result = run_kpipe(project, "validate", "pipelines/", "--format", fmt, seconds=60)
    assert result.code == 1, result.text
    assert "must be" in result.text  # the typed fields were reported, quoting only tokens


@pytest.mark.parametrize("transformation", sorted(TRANSFORMATIONS))
def test_each_transformation_in_a_typed_field_with_github_annotations(
    project: Path, transformation: str
) -> None:
    """The reported attack, per transformation: `partitions: "{{ env('GITHUB_TOKEN')[1:] }}"`, --format github."""
    expression = TRANSFORMATIONS[transformation].replace("X", "env('GITHUB_TOKEN')")
    (project / "pipelines" / "p.yaml").write_text(
        f'topics:\n  orders:\n    partitions: "{{{{ {expression} }}}}"\n'
    )
    result = run_kpipe(project, "validate", "pipelines/", "--format", "github")
    assert result.code in (0, 1), result.text  # |int and |length give a number (of the token): valid


def test_a_typed_field_takes_the_real_value_and_names_the_variable_when_wrong(project: Path) -> None:
    (project / "pipelines" / "p.yaml").write_text("topics:\n  orders:\n    partitions: \"{{ env('N') }}\"\n")
    assert run_kpipe(project, "validate", "pipelines/", env={"N": "6"}).code == 0
    for fmt in ("text", "json", "github"):
        bad = run_kpipe(project, "validate", "pipelines/", "--format", fmt, env={"N": "abc"})
        assert bad.code == 1
        assert "env('N')" in bad.text.replace("\\'", "'") and "abc" not in bad.text
    # A value in range of the type but not of the field: the bound is named, the value is not.
    high = run_kpipe(project, "validate", "pipelines/", env={"N": "987654321"})
    assert high.code == 1 and "987654321" not in high.text and "env('N')" in high.text


def test_show_secrets_is_a_flag_and_no_file_can_turn_it_on(project: Path) -> None:
    (project / "pipelines" / "p.yaml").write_text(
        "show_secrets: true\nshow-secrets: true\ntopics:\n  orders: {partitions: 1, description: \"{{ env('N') }}\"}\n"
    )
    result = run_kpipe(project, "render", "pipelines/", env={"N": "visible-only-with-the-flag"})
    assert "visible-only-with-the-flag" not in result.text
    shown = run_kpipe(
        project, "render", "pipelines/", "--show-secrets", env={"N": "visible-only-with-the-flag"}
    )
    assert "visible-only-with-the-flag" in shown.out
