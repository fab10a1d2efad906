"""Issue 11.4: template rendering is bounded in output size, work and time: a positioned error, never
MemoryError, never minutes."""

from __future__ import annotations

from pathlib import Path

import pytest

from hostile import run_kpipe

CASES = {
    "nested loops": (
        "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
        "the template runs more than 1,000,000 loop iterations and calls",
    ),
    "output size": (
        "{% for i in range(100000) %}{% for j in range(9) %}xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx{% endfor %}"
        "{% endfor %}",
        "the rendered file is larger than 5 MiB",
    ),
    "string repeat": ("{{ 'a' * 1000000000 }}", "the result of '*' would be larger than 5 MiB"),
    "doubling": (
        "{% set ns = namespace(s='ab') %}{% for i in range(64) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}",
        "the result of '~' would be larger than 5 MiB",
    ),
    "padding filter": ("{{ 'a'|center(1000000000) }}", "filter 'center': argument 1000000000 is larger than"),
    "padding method": ("{{ 'a'.ljust(1000000000) }}", "'ljust': argument 1000000000 is larger than"),
    "format width": ("{{ '{:999999999}'.format(1) }}", "a format width in the text is larger than"),
    "percent width": ("{{ '%999999999d' % 1 }}", "a format width in the text is larger than"),
    "replace": (
        "{% set s = 'a' * 3000000 %}{{ s.replace('a', s) }}",
        "the result of 'replace' would be larger than 5 MiB",
    ),
    "many widths": ("{{ '%4000000s%4000000s' % (1, 2) }}", "the result of '%' would be larger than 5 MiB"),
    "many widths filter": (
        "{{ '%4000000s%4000000s'|format(1, 2) }}",
        "the result of filter 'format' would be larger than 5 MiB",
    ),
    "indent per line": (
        "{{ ('a' ~ '\\n' * 100)|indent(4000000) }}",
        "the result of filter 'indent' would be larger than 5 MiB",
    ),
    "lipsum": ("{{ lipsum(1000000) }}", "'lipsum' is undefined"),
    "big power": ("{{ 2 ** 100000000 }}", "an exponent above 64"),
    "big range": ("{% for i in range(10**9) %}{% endfor %}", "'range': argument 1000000000 is larger than"),
    # Issue 20.4: nested containers whose written form is huge though each operation is small.
    "nested containers": ("{{ [['x'*5000]*5000]*5000 }}", "would be larger than 5 MiB"),
    "nested tojson": ("{{ [['x'*5000]*5000]*5000|tojson }}", "would be larger than 5 MiB"),
    "nested string": ("{{ [['x'*5000]*5000]*5000|string }}", "would be larger than 5 MiB"),
    "nested format": ("{{ '{}'.format([['x'*5000]*5000]*5000) }}", "would be larger than 5 MiB"),
    "nested percent": ("{{ '%s' % ([['x'*5000]*5000]*5000,) }}", "would be larger than 5 MiB"),
    "nested join": ("{{ ([['x'*5000]*5000]*500)|join(',') }}", "would be larger than 5 MiB"),
    **{
        # Nesting built by append, each piece under the limit (4.5 MB), 5,000 times: 22 GB once written out.
        f"nested by append, {how}": (
            "{% set a = 'x'*5000 %}{% set b = [] %}{% for i in range(900) %}{% set _ = b.append(a) %}"
            "{% endfor %}{% set c = [] %}{% for i in range(5000) %}{% set _ = c.append(b) %}{% endfor %}"
            + expression,
            "would be larger than 5 MiB",
        )
        for how, expression in {
            "output": "{{ c }}",
            "tojson": "{{ c|tojson }}",
            "string": "{{ c|string }}",
            "pprint": "{{ c|pprint }}",
            "format method": "{{ '{}'.format(c) }}",
            "format filter": "{{ '%s'|format(c) }}",
            "percent": "{{ '%s' % (c,) }}",
            "concat": "{{ 'x' ~ c }}",
            "join": "{{ c|join(',') }}",
            "dict": "{{ {'k': c} }}",
        }.items()
    },
    "literal list of big values": (
        "{% set a = 'x'*4000000 %}{{ [a, a, a, a, a, a, a, a] }}",
        "the value written out would be larger than 5 MiB",
    ),
    "list built in a loop": (
        "{% set a = ['x'*4000000] %}{% set l = [] %}{% for i in range(1000) %}{% set _ = l.append(a) %}"
        "{% endfor %}{{ l }}",
        "the value written out would be larger than 5 MiB",
    ),
    "captured block": (
        "{% set s = 'x'*4000000 %}{% set b %}{% for i in range(1000) %}{{ s }}{% endfor %}{% endset %}{{ b|length }}",
        "a captured block would be larger than 5 MiB",
    ),
    "macro output": (
        "{% macro m() %}{% for i in range(1000) %}{{ 'x'*1000000 }}{% endfor %}{% endmacro %}{{ m()|length }}",
        "",  # the captured block or the work limit, whichever comes first
    ),
    "many live values": (
        "{% set l = [] %}{% for i in range(1000) %}{% set _ = l.append('x'*4000000 ~ i) %}{% endfor %}",
        "the template builds more than 256 MB of values in all",
    ),
    "json indent": ("{{ [[[[1]]]]|tojson(indent=4000000) }}", "an indent above 64"),
    "exponential macro": (
        "{% macro f(n) %}{% if n %}{{ f(n-1) }}{{ f(n-1) }}{% endif %}{% endmacro %}{{ f(60) }}",
        "",  # the call count or the time limit, whichever comes first
    ),
}


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_runaway_template_is_a_positioned_error(project: Path, case: str) -> None:
    template, message = CASES[case]
    (project / "pipelines" / "p.yaml").write_text(f"# a comment\nx: 1\ny: {template}\n")
    # Without RLIMIT_AS (hostile.run_kpipe): the bounds on memory and time are kpipe's own, measured here.
    result = run_kpipe(project, "validate", "pipelines/", peak_mb=512, seconds=30)
    assert result.code == 1, result.text
    first = result.err.splitlines()[0]
    assert first.startswith("pipelines/p.yaml:3:"), first
    assert "template error: " in first and message in first, first


def test_runaway_template_with_an_unset_variable_is_still_bounded(project: Path) -> None:
    # The unset variable stops the first rendering early; the second one, which lists every unset variable,
    # must be bounded too.
    (project / "pipelines" / "p.yaml").write_text(
        "x: {{ env('KPIPE_HOSTILE_UNSET') }}\n"
        "y: {% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}\n"
    )
    result = run_kpipe(project, "validate", "pipelines/", peak_mb=512, seconds=30)
    assert result.code == 1
    assert "environment variable 'KPIPE_HOSTILE_UNSET' is not set" in result.err
