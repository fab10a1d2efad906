"""templating: sandboxed Jinja2 with strict undefined names, env(), and errors at the template's line."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import pytest

from kpipe.diagnostics import Position
from kpipe.loading.templating import needs_rendering, render
from kpipe.redaction import env_token, reveal, shown


def test_plain_text_is_returned_untouched() -> None:
    assert not needs_rendering("topics: {}\n")
    assert render("topics: {}\n", "p.yaml", {}) == ("topics: {}\n", [])


def test_variables_are_top_level_names_and_under_vars() -> None:
    text, diagnostics = render("a: {{ n }}\nb: {{ vars.n * 2 }}\n", "p.yaml", {"n": 3})
    assert diagnostics == []
    assert text == "a: 3\nb: 6\n"


def test_default_filter_and_loops() -> None:
    text, _ = render("{% for t in ['a', 'b'] %}{{ t }}: {{ p | default(1) }}\n{% endfor %}", "p.yaml", {})
    assert text == "a: 1\nb: 1\n"


def test_trailing_newline_is_kept() -> None:
    assert render("a: {{ 1 }}\n", "p.yaml", {})[0] == "a: 1\n"


def test_env_reads_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KPIPE_TEST_BROKER", "b1:9092")
    monkeypatch.delenv("KPIPE_TEST_NOT_SET", raising=False)
    text, diagnostics = render(
        "a: {{ env('KPIPE_TEST_BROKER') }}\nb: {{ env('KPIPE_TEST_NOT_SET', 'local') }}\n", "p.yaml", {}
    )
    assert diagnostics == []
    # The template sees an opaque token, never the value; it is substituted where a client consumes it.
    assert text == f"a: {env_token('KPIPE_TEST_BROKER')}\nb: local\n"
    assert reveal(text) == "a: b1:9092\nb: local\n"
    assert shown(text) == "a: env('KPIPE_TEST_BROKER')\nb: local\n"


def test_missing_env_without_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KPIPE_TEST_NOT_SET", raising=False)
    text, diagnostics = render("a: 1\nb: {{ env('KPIPE_TEST_NOT_SET') }}\n", "p.yaml", {})
    assert text is None
    [found] = diagnostics
    assert found.format() == "p.yaml:2:12: error: environment variable 'KPIPE_TEST_NOT_SET' is not set"
    assert found.hint == "set KPIPE_TEST_NOT_SET, or give a default: env('KPIPE_TEST_NOT_SET', '...')"


def test_undefined_variable_with_did_you_mean() -> None:
    _, diagnostics = render("a: 1\nb: {{ partition }}\n", "p.yaml", {"partitions": 3})
    [found] = diagnostics
    assert found.format() == "p.yaml:2:7: error: template error: 'partition' is undefined"
    assert found.hint == "did you mean 'partitions'?"


def test_undefined_variable_without_close_name() -> None:
    _, diagnostics = render("a: {{ replicas }}\n", "p.yaml", {})
    assert diagnostics[0].hint == "pass it with --var replicas=... or in a --values file"


def test_undefined_attribute_is_an_error_too() -> None:
    _, diagnostics = render("a: {{ vars.nope }}\n", "p.yaml", {})
    assert diagnostics[0].code == "template-undefined"
    assert diagnostics[0].position == Position("p.yaml", 1, 4)


def test_syntax_error_points_at_the_line() -> None:
    _, diagnostics = render("a: 1\nb: {{ 1 + }}\n", "p.yaml", {})
    assert diagnostics[0].code == "template-syntax"
    assert diagnostics[0].position == Position("p.yaml", 2, 4)


def test_unclosed_block() -> None:
    _, diagnostics = render("{% if true %}\na: 1\n", "p.yaml", {})
    assert diagnostics[0].message.startswith("template syntax error: Unexpected end of template.")


@pytest.mark.parametrize(
    "expression",
    [
        "''.__class__.__mro__",
        "env.__globals__",
        "cycler.__init__.__globals__",
        "().__class__.__base__.__subclasses__()",
        "lipsum.__globals__['os']",
    ],
)
def test_sandbox_blocks_python_internals(expression: str) -> None:
    text, diagnostics = render(f"a: 1\nb: {{{{ {expression} }}}}\n", "p.yaml", {})
    assert text is None
    [found] = diagnostics
    assert found.code in ("template-sandbox", "template-undefined")
    assert found.position is not None and found.position.line == 2
    assert "error" in found.format()


def test_sandbox_message_names_the_attribute() -> None:
    _, diagnostics = render("a: {{ ''.__class__ }}\n", "p.yaml", {})
    assert diagnostics[0].format() == (
        "p.yaml:1:10: error: template error: not allowed in the sandbox: "
        "access to attribute '__class__' of 'str' object is unsafe"
    )


def test_an_exception_inside_the_template_is_one_diagnostic() -> None:
    _, diagnostics = render("a: 1\nb: {{ 1 // 0 }}\n", "p.yaml", {})
    assert diagnostics[0].format() == (
        "p.yaml:2:4: error: template error: ZeroDivisionError: integer division or modulo by zero"
    )


def test_every_unset_environment_variable_is_reported_at_once_without_a_cascade(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from kpipe.compilation.project import inspect_project

    for name in ("KPIPE_T_ONE", "KPIPE_T_USER", "KPIPE_T_PASS"):
        monkeypatch.delenv(name, raising=False)
    (tmp_path / "e.schema.yaml").write_text("{type: object, properties: {id: {type: string}}}\n")
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "cluster.yaml").write_text(
        "# env('KPIPE_T_ONE') in a comment is not a use\n"
        "cluster:\n"
        "  bootstrap_servers: \"{{ env('KPIPE_T_ONE') }}\"\n"
        "  config: {sasl.username: \"{{ env('KPIPE_T_USER') }}\", sasl.password: \"{{ env('KPIPE_T_PASS') }}\"}\n"
        "schemas:\n  E: ../e.schema.yaml\n"
    )
    # Another file uses the schema the broken file declares: no "unknown schema" error follows.
    (tmp_path / "p" / "topics.yaml").write_text("topics:\n  t: {partitions: 1, schema: E}\n")
    diagnostics = inspect_project([tmp_path / "p"]).diagnostics
    file = str(tmp_path / "p" / "cluster.yaml")
    shown = [d.format().replace(file, "cluster.yaml") for d in diagnostics]
    assert shown == [
        "cluster.yaml:3:31: error: environment variable 'KPIPE_T_ONE' is not set",
        "cluster.yaml:4:36: error: environment variable 'KPIPE_T_USER' is not set",
        "cluster.yaml:4:80: error: environment variable 'KPIPE_T_PASS' is not set",
    ]
    assert diagnostics[2].hint == "set KPIPE_T_PASS, or give a default: env('KPIPE_T_PASS', '...')"


def _peak_bytes_of_rendering(source: str) -> tuple[int, list[str]]:
    tracemalloc.start()
    try:
        text, diagnostics = render(source, "p.yaml", {})
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert text is None
    return peak, [d.code for d in diagnostics]


@pytest.mark.parametrize(
    "source",
    [
        # A range, a string and a mapping are joined item by item, like a list: 100,000 x 600 characters.
        '{{ range(100000)|join("a" * 600) }}',
        '{{ ("a" * 600).join("b" * 100000) }}',
        '{{ ("a" * 600).join(range(100000)|map("string")) }}',  # a generator: counted as it is made a list
        '{{ range(100000)|map("string")|join("a" * 600) }}',
    ],
)
def test_a_join_too_large_is_refused_before_it_is_built(source: str) -> None:
    peak, codes = _peak_bytes_of_rendering(source)
    assert codes == ["template-limit"]
    assert peak < 20_000_000, f"{peak:,} bytes built before the refusal"


def test_a_big_integer_weighs_as_many_characters_as_it_has_digits() -> None:
    # 4,032 bits are 1,214 digits: 40,000 of them written out are 50 MB of text (and seconds of conversion).
    peak, codes = _peak_bytes_of_rendering("{{ [(2 ** 64) ** 63] * 40000 }}")
    assert codes == ["template-limit"]
    assert peak < 20_000_000, f"{peak:,} bytes built before the refusal"
