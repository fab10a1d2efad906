"""Jinja2 rendering of pipeline files: sandboxed, strict about undefined names.

A pipeline file is rendered as text before it is parsed as YAML, so `{% for %}` and `{% if %}` can shape the
document. Templates see:

- `env('NAME')` / `env('NAME', default)`: an environment variable (missing without default is an error);
- every template variable from `--values` files and `--var key=value` (later wins), as top-level names and
  under `vars`.

The sandbox blocks attribute access to Python internals (`__class__`, `__globals__`, ...), and StrictUndefined
makes a misspelt variable an error at its line instead of an empty string.

Rendering is bounded, because a pipeline file may come from anyone who opens a pull request (as dbt and
Ansible do with their own sandboxes, but enforced here rather than advised):

- output: at most MAX_OUTPUT_CHARS per file, checked while the template streams out (Template.generate);
- work: at most MAX_STEPS loop iterations and calls (every `{% for %}` iterable is wrapped at compile time,
  every call goes through the sandbox), and at most MAX_SECONDS of wall time;
- size of intermediate values: `*`, `+`, `**`, `%`, `~`, and calls/filters that grow strings (`center`,
  `ljust`, `replace`, `join`, `format`, ...) are refused when their result would pass the output limit,
  before it is built, so none of them can raise MemoryError;
- `range()` is limited by Jinja's sandbox (MAX_RANGE);
- the size a value would have once written out is its *weight*: the length of its text, or for a list or a
  mapping the weights of its items, counted again for every reference (`[[s]*5000]*5000` weighs 25 million
  times `s`). Everything that writes a value out (`{{ }}`, `~`, `string`, `tojson`, `format`, `join`, `%`,
  a captured block) is refused when the weight passes the output limit, before the text is built;
- memory: every string and container an operation builds counts against MAX_WORK_BYTES for the whole
  rendering, so a loop that keeps building large values stops at a bound of its own.

Going past a limit is a positioned error (`template-limit`) at the line that did it.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import os
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sized
from typing import Any

import jinja2
from jinja2 import nodes
from jinja2.compiler import CodeGenerator
from jinja2.sandbox import SandboxedEnvironment, SecurityError

from kpipe.diagnostics import Diagnostic, Position, did_you_mean, error
from kpipe.loading.template_syntax import needs_rendering
from kpipe.redaction import env_token

_MISSING = object()


class _EnvMissing(Exception):
    def __init__(self, name: str):
        super().__init__(name)
        self.name = name


def _env_function(unset: list[str] | None = None) -> Callable[..., Any]:
    """The templates' env(NAME[, default]). A variable that is set renders as its opaque token
    (kpipe.redaction): the template never sees its value, so nothing it does can put the value in an output.
    One that is unset and has no default stops the rendering (_EnvMissing); with `unset` it is recorded there
    instead and renders as ""."""

    def env(name: str, default: Any = _MISSING) -> Any:
        _tick()
        if not isinstance(name, str):
            raise TemplateLimit("env() takes the name of a variable, as a string")
        if os.environ.get(name) is not None:
            return env_token(name)
        if default is not _MISSING:
            return default
        if unset is None:
            raise _EnvMissing(name)
        if name not in unset:
            unset.append(name)
        return ""

    return env


MAX_OUTPUT_CHARS = 5 * 1024 * 1024
MAX_STEPS = 1_000_000
MAX_SECONDS = 10.0
# Bytes of strings and containers built by all the operations of one rendering, together.
MAX_WORK_BYTES = 256 * 1024 * 1024
# tojson/pprint indentation past this is no configuration (and multiplies the output by the depth).
MAX_INDENT = 64
# Integers past this many bits are not configuration (and squaring them again and again takes minutes).
MAX_INT_BITS = 4096
# A format width or precision with more digits than this would build a string past the output limit.
_NUMBER = re.compile(r"\d{1,12}")
_HUGE_WIDTH = re.compile(rf"\d{{{len(str(MAX_OUTPUT_CHARS)) + 1},}}")


class TemplateLimit(Exception):
    """Rendering went past one of the bounds; the message says which. `line`: the template line, when it is
    not in the traceback (the output size is checked outside the template's frames)."""

    def __init__(self, message: str, line: int = 0):
        super().__init__(message)
        self.line = line


class _Budget:
    def __init__(self, steps: int, seconds: float):
        self.max_steps = steps
        self.steps = 0
        self.seconds = seconds
        self.deadline = time.monotonic() + seconds
        self.work_bytes = 0

    def tick(self) -> None:
        self.steps += 1
        if self.steps > self.max_steps:
            raise TemplateLimit(f"the template runs more than {self.max_steps:,} loop iterations and calls")
        self.check_time()

    def built(self, value: Any) -> None:
        if isinstance(value, str | bytes):
            self.work_bytes += len(value)
        elif isinstance(value, list | tuple | dict | set):
            self.work_bytes += 8 * len(value)
        if self.work_bytes > MAX_WORK_BYTES:
            raise TemplateLimit(
                f"the template builds more than {MAX_WORK_BYTES // 1024 // 1024} MB of values in all"
            )

    def check_time(self) -> None:
        if time.monotonic() > self.deadline:
            raise TemplateLimit(f"rendering takes longer than {self.seconds:g} s")


_BUDGET: contextvars.ContextVar[_Budget | None] = contextvars.ContextVar(
    "kpipe_template_budget", default=None
)


def _tick() -> None:
    budget = _BUDGET.get()
    if budget is not None:
        budget.tick()


def _too_big(what: str) -> TemplateLimit:
    return TemplateLimit(f"{what} would be larger than {MAX_OUTPUT_CHARS // 1024 // 1024} MiB")


def _weight(value: Any, limit: int = MAX_OUTPUT_CHARS) -> int:
    """About how long `value` is once written out (str(), tojson, format), counting every reference again;
    stops counting once past `limit`. Nested containers are walked without recursion."""
    if isinstance(value, str | bytes):
        return len(value)
    if not isinstance(value, list | tuple | dict | set | frozenset):
        return 0
    total = 0
    stack: list[Any] = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str | bytes):
            total += len(item) + 4  # quotes and a separator
        elif isinstance(item, dict):
            total += 2 + 2 * len(item)
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list | tuple | set | frozenset):
            total += 2 + len(item)
            stack.extend(item)
        elif isinstance(item, int) and not isinstance(item, bool):
            total += _digits(item)  # a 4,096-bit number is 1,234 characters once written out
        else:
            total += 8
        if total > limit:
            return total
    return total


def _digits(number: int) -> int:
    """At least the number of characters str(number) has (log10(2) < 0.302), without converting it."""
    return number.bit_length() * 302 // 1000 + 2


# Kept for the estimates below: a value's size is its weight.
_size = _weight


def _check_value(value: Any, what: str = "a value", *, built: bool = True) -> Any:
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > MAX_INT_BITS:
        raise TemplateLimit(f"{what} is a number with more than {MAX_INT_BITS} bits")
    if _weight(value) > MAX_OUTPUT_CHARS:
        raise _too_big(what)
    budget = _BUDGET.get()
    if built and budget is not None:
        budget.built(value)
    return value


def _finalize(value: Any) -> Any:
    """Every `{{ }}` value passes here before it is turned into text."""
    if _weight(value) > MAX_OUTPUT_CHARS:
        raise _too_big("the value written out")
    return value


def _bounded_concat(parts: Iterable[str]) -> str:
    """Joins a captured block (`{% set x %}`, a macro's body, `{% filter %}`) within the output limit."""
    kept: list[str] = []
    size = 0
    for part in parts:
        size += len(part)
        if size > MAX_OUTPUT_CHARS:
            raise _too_big("a captured block")
        kept.append(part)
    text = "".join(kept)
    budget = _BUDGET.get()
    if budget is not None:
        budget.built(text)
    return text


def _check_arguments(args: Iterable[Any], kwargs: Mapping[str, Any], what: str) -> None:
    for value in (*args, *kwargs.values()):
        _check_value(value, f"an argument of {what}", built=False)
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_OUTPUT_CHARS:
            # A width, count or repeat (center(10**9), ljust, indent, ...) that would build a huge string.
            raise TemplateLimit(f"{what}: argument {value} is larger than {MAX_OUTPUT_CHARS:,}")
        if isinstance(value, str) and ("%" in value or "{" in value) and _HUGE_WIDTH.search(value):
            raise TemplateLimit(f"{what}: a format width in the text is larger than {MAX_OUTPUT_CHARS:,}")


def _estimate(name: str, subject: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> int:
    """An upper bound of the size of what a string-growing operation returns, computed before running it."""
    if name == "replace" and isinstance(subject, str) and len(args) >= 2:
        old, new = str(args[0]), str(args[1])
        count = subject.count(old) if old else len(subject) + 1
        return len(subject) + count * len(new)
    if name == "join" and isinstance(subject, str) and args:
        items = args[0]
        if isinstance(items, str):  # joined character by character
            return len(items) * (1 + len(subject))
        if isinstance(items, Sized) and isinstance(items, Iterable):  # a list, a range, a mapping's keys, ...
            written = sum(len(i) if isinstance(i, str) else max(32, _weight([i])) for i in items)
            return written + len(subject) * len(items)
    if name in ("format", "format_map", "%") and isinstance(subject, str):
        # Every number in the text may be a width or a precision: "%4000000s%4000000s" builds 8 MB.
        widths = sum(int(n) for n in _NUMBER.findall(subject))
        return len(subject) + widths + sum(_size(v) for v in (*args, *kwargs.values()))
    counts = [v for v in (*args, *kwargs.values()) if isinstance(v, int) and not isinstance(v, bool)]
    if isinstance(subject, str) and counts:
        # A width applied per line or per tab (indent, expandtabs), or once (center, ljust, zfill, ...).
        return len(subject) + max(counts) * (subject.count("\n") + subject.count("\t") + 1)
    return 0


def _guard_filter(name: str, func: Any) -> Any:
    @functools.wraps(func)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        _tick()
        values = [a for a in args if not isinstance(a, jinja2.runtime.Context | jinja2.nodes.EvalContext)]
        values = [a for a in values if not isinstance(a, jinja2.Environment)]
        if name == "join" and values and not isinstance(values[0], Sized):
            # A generator (map, select, ...) has no length to estimate: made a list first, item by item.
            where = next(i for i, a in enumerate(args) if a is values[0])
            values[0] = _listed(values[0])
            args = (*args[:where], values[0], *args[where + 1 :])
        if values:  # the value filtered: as large as it may be written out
            _check_value(values[0], f"the value given to filter '{name}'", built=False)
        _check_arguments(values[1:], kwargs, f"filter '{name}'")
        if name in ("tojson", "pprint"):
            indent = kwargs.get("indent", values[1] if len(values) > 1 else None)
            if isinstance(indent, int) and indent > MAX_INDENT:
                raise TemplateLimit(f"filter '{name}': an indent above {MAX_INDENT} is no configuration")
        if name == "replace" and len(values) >= 3:  # value|replace(old, new)
            estimate = _estimate("replace", values[0], tuple(values[1:3]), {})
        elif name == "join" and values:  # value|join(separator)
            separator = str(values[1]) if len(values) > 1 else str(kwargs.get("d", ""))
            estimate = _estimate("join", separator, (values[0],), {})
        elif values:  # value|format(...), value|indent(width), value|center(width), ...
            estimate = _estimate(name, values[0], tuple(values[1:]), kwargs)
        else:
            estimate = 0
        if estimate > MAX_OUTPUT_CHARS:
            raise _too_big(f"the result of filter '{name}'")
        return _check_value(func(*args, **kwargs), f"the result of filter '{name}'")

    return guarded


def _concat(*parts: Any) -> str:
    if sum(_weight(p) for p in parts) > MAX_OUTPUT_CHARS:
        raise _too_big("the result of '~'")
    texts = [str(p) for p in parts]
    if sum(len(t) for t in texts) > MAX_OUTPUT_CHARS:
        raise _too_big("the result of '~'")
    return _check_value("".join(texts), "the result of '~'")


def _listed(iterable: Any) -> list[Any]:
    return _check_value(list(_loop(iterable)), "the items joined")


def _loop(iterable: Any) -> Iterator[Any]:
    """Every `{% for %}` iterates through this: each iteration counts against the budget."""
    if isinstance(iterable, jinja2.Undefined):
        iterable = iter(iterable)  # StrictUndefined raises here, at the loop's line
    for item in iterable:
        _tick()
        yield item


class _Generator(CodeGenerator):
    def visit_Concat(self, node: nodes.Concat, frame: Any) -> None:
        self.write("environment.kpipe_concat(")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write(")")


class BoundedEnvironment(SandboxedEnvironment):
    """The sandbox with bounds on work, time and the size of every value built (see the module docstring)."""

    code_generator_class = _Generator
    intercepted_binops = frozenset({"*", "**", "+", "%"})

    def __init__(self, **options: Any):
        super().__init__(**options)
        self.filters = {name: _guard_filter(name, f) for name, f in self.filters.items()}
        self.globals["_kpipe_loop"] = _loop
        del self.globals["lipsum"]  # lipsum(10**6) builds hundreds of MB of text, and is no configuration
        self.kpipe_concat = _concat
        self.concat = _bounded_concat  # type: ignore[assignment]

    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        tree = super()._parse(source, name, filename)
        for loop in tree.find_all(nodes.For):
            loop.iter = nodes.Call(
                nodes.Name("_kpipe_loop", "load", lineno=loop.lineno),
                [loop.iter],
                [],
                None,
                None,
                lineno=loop.lineno,
            )
        return tree

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        _tick()
        what = f"the result of '{operator}'"
        _check_value(left, what, built=False)
        _check_value(right, what, built=False)
        if operator == "**":
            if isinstance(right, int | float) and abs(right) > 64 and abs(left) > 1:
                raise TemplateLimit(f"an exponent above 64 ({right}) is not configuration")
        elif operator == "*":
            sizes = (_size(left), _size(right))
            counts = [v for v in (left, right) if isinstance(v, int) and not isinstance(v, bool)]
            if max(sizes) and counts and max(sizes) * max(counts) > MAX_OUTPUT_CHARS:
                raise _too_big(what)
        elif operator == "+":
            if _size(left) + _size(right) > MAX_OUTPUT_CHARS:
                raise _too_big(what)
        elif operator == "%" and isinstance(left, str):
            _check_arguments([left], {}, "'%'")
            values = right if isinstance(right, tuple) else (right,)
            _check_arguments(values, right if isinstance(right, Mapping) else {}, "'%'")
            if _estimate("%", left, values, {}) > MAX_OUTPUT_CHARS:
                raise _too_big(what)
        return _check_value(super().call_binop(context, operator, left, right), what)

    def wrap_str_format(self, value: Any) -> Any:
        wrapped = super().wrap_str_format(value)
        if wrapped is None:
            return None
        text, name = value.__self__, value.__name__

        @functools.wraps(wrapped)
        def bounded_format(*args: Any, **kwargs: Any) -> str:
            _tick()
            _check_arguments(args, kwargs, f"'{name}'")
            if _HUGE_WIDTH.search(text):
                raise TemplateLimit(
                    f"'{name}': a format width in the text is larger than {MAX_OUTPUT_CHARS:,}"
                )
            if _estimate(name, text, args, kwargs) > MAX_OUTPUT_CHARS:
                raise _too_big(f"the result of '{name}'")
            return _check_value(wrapped(*args, **kwargs), f"the result of '{name}'")

        return bounded_format

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805
        _tick()
        name = getattr(__obj, "__name__", "a function")
        name = "range" if name == "safe_range" else name
        _check_arguments(args, kwargs, f"'{name}'")
        subject = getattr(__obj, "__self__", None)
        if name == "join" and isinstance(subject, str) and args and not isinstance(args[0], Sized):
            args = (_listed(args[0]), *args[1:])  # as the join filter does
        if _estimate(name, subject, args, kwargs) > MAX_OUTPUT_CHARS:
            raise _too_big(f"the result of '{name}'")
        return _check_value(super().call(__context, __obj, *args, **kwargs), f"the result of '{name}'")


def _make_environment() -> SandboxedEnvironment:
    environment = BoundedEnvironment(
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
        finalize=_finalize,
    )
    environment.globals["env"] = _env_function()
    return environment


def _render_bounded(template: jinja2.Template, context: Mapping[str, Any]) -> str:
    budget = _Budget(MAX_STEPS, MAX_SECONDS)
    token = _BUDGET.set(budget)
    try:
        chunks: list[str] = []
        size = 0
        # As Template.generate does, but with the generator in hand to tell which line was rendering.
        stream = template.root_render_func(template.new_context(dict(context)))
        try:
            for chunk in stream:
                size += len(chunk)
                if size > MAX_OUTPUT_CHARS:
                    frame = stream.gi_frame
                    line = template.get_corresponding_lineno(frame.f_lineno) if frame is not None else 0
                    raise TemplateLimit(
                        f"the rendered file is larger than {MAX_OUTPUT_CHARS // 1024 // 1024} MiB", line
                    )
                budget.check_time()
                chunks.append(chunk)
        except TemplateLimit as exc:
            if exc.line:
                raise
            template.environment.handle_exception()  # re-raised with the template's lines in the traceback
        except Exception:
            template.environment.handle_exception()
        return "".join(chunks)
    finally:
        _BUDGET.reset(token)


_ENVIRONMENT: SandboxedEnvironment | None = None


def render(text: str, file: str, variables: Mapping[str, Any]) -> tuple[str | None, list[Diagnostic]]:
    """Render one file's text. Returns (rendered text, diagnostics); text is None on error."""
    global _ENVIRONMENT
    if not needs_rendering(text):
        return text, []
    if _ENVIRONMENT is None:
        _ENVIRONMENT = _make_environment()
    context = dict(variables)
    context["vars"] = dict(variables)
    try:
        template = _ENVIRONMENT.from_string(text)
        template.name = template.filename = file
        return _render_bounded(template, context), []
    except jinja2.TemplateSyntaxError as exc:
        # At the end of the template Jinja's line is wherever the text stopped, not the unclosed tag.
        at_end = (exc.message or "").startswith("Unexpected end of template")
        return None, [
            error(
                f"template syntax error: {exc.message}",
                Position(file, exc.lineno or 0, 1) if at_end else _where(text, file, exc.lineno or 0, None),
                code="template-syntax",
            )
        ]
    except _EnvMissing as exc:
        # Report every unset variable of the file at once, not one per run.
        names = _unset_env_names(text, context) or [exc.name]
        return None, [
            error(
                f"environment variable '{name}' is not set",
                _env_position(text, file, name) or _where(text, file, _template_line(exc, file), name),
                code="template-env",
                hint=f"set {name}, or give a default: env('{name}', '...')",
            )
            for name in names
        ]
    except jinja2.UndefinedError as exc:
        name = _undefined_name(exc)
        hint = did_you_mean(name, variables) if name else None
        if hint is None and name:
            hint = f"pass it with --var {name}=... or in a --values file"
        return None, [
            error(
                f"template error: {exc.message}",
                _where(text, file, _template_line(exc, file), name),
                code="template-undefined",
                hint=hint,
            )
        ]
    except (
        Exception
    ) as exc:  # the limits, the sandbox, a filter raising on bad input, a division by zero, ...
        return None, [_render_error(exc, text, file)]


def _render_error(exc: Exception, text: str, file: str) -> Diagnostic:
    """A template that failed while rendering (not a syntax error, an unset variable or environment variable)."""
    line = exc.line if isinstance(exc, TemplateLimit) and exc.line else _template_line(exc, file)
    if isinstance(exc, TemplateLimit):
        return error(
            f"template error: {exc}",
            _where(text, file, line, None),
            code="template-limit",
            hint="templates are bounded (output size, loop iterations, time); generate less",
        )
    if isinstance(exc, MemoryError | RecursionError):
        what = "too much memory" if isinstance(exc, MemoryError) else "too deep a recursion"
        return error(
            f"template error: rendering needs {what}", _where(text, file, line, None), code="template-limit"
        )
    if isinstance(exc, OverflowError):  # the sandbox's range() limit
        return error(f"template error: {exc}", _where(text, file, line, None), code="template-limit")
    if isinstance(exc, SecurityError):
        attribute = re.search(r"attribute '([^']+)'", str(exc))
        return error(
            f"template error: not allowed in the sandbox: {str(exc).rstrip('.')}",
            _where(text, file, line, attribute.group(1) if attribute else None),
            code="template-sandbox",
        )
    return error(
        f"template error: {type(exc).__name__}: {exc}",
        _where(text, file, line, None),
        code="template-error",
    )


def _unset_env_names(text: str, context: Mapping[str, Any]) -> list[str]:
    """Render again with an env() that records unset variables instead of stopping at the first."""
    unset: list[str] = []

    environment = _make_environment()
    environment.globals["env"] = _env_function(unset)
    with contextlib.suppress(Exception):  # anything else wrong is reported once the variables are set
        _render_bounded(environment.from_string(text), context)  # as bounded as the first rendering
    return unset


def _env_position(text: str, file: str, name: str) -> Position | None:
    call = re.compile(r"env\(\s*['\"]" + re.escape(name) + r"['\"]")
    found = None
    for tag in re.finditer(r"\{\{.*?\}\}|\{%.*?%\}", text, re.DOTALL):  # not a mention in a comment
        found = call.search(text, tag.start(), tag.end())
        if found is not None:
            break
    if found is None:
        return None
    line = text.count("\n", 0, found.start()) + 1
    column = found.start() - (text.rfind("\n", 0, found.start()) + 1)
    source = text.splitlines()[line - 1]
    # Point at the name, as the first-error path does.
    return Position(file, line, source.index(name, column) + 1)


def _where(text: str, file: str, line: int, needle: str | None) -> Position:
    """Point at the first mention of `needle` on the failing line, else at the line's first template tag."""
    lines = text.split("\n")  # not splitlines(): U+2028 and U+0085 do not end a line in an editor
    if not 0 < line <= len(lines):
        return Position(file, line, 1 if line else 0)
    source = lines[line - 1]
    for probe in (needle, "{{", "{%"):
        if probe and probe in source:
            return Position(file, line, source.index(probe) + 1)
    return Position(file, line, 1)


def _template_line(exc: BaseException, file: str) -> int:
    """Jinja rewrites tracebacks so template frames carry the template's file name and line."""
    line = 0
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == file:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def _undefined_name(exc: jinja2.UndefinedError) -> str | None:
    message = exc.message or ""
    if message.startswith("'") and "' is undefined" in message:
        return message[1 : message.index("' is undefined")]
    return None
