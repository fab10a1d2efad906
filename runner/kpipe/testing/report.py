"""The results of `kpipe test`: one line per case for people (text), JUnit XML for CI.

Text: `PASS name` or `FAIL name`; under a failure, each expectation not met with its position, and the
expected and actual values side by side. Every line goes through kpipe.redaction.safe_text (secrets masked,
control characters escaped); XML through `_xml_text` (characters XML cannot hold are dropped).
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from typing import Any

from kpipe.redaction import safe_text
from kpipe.testing.runner import MISSING, CaseResult

# Expected values wider than this are not padded: the actual value then follows after the separator.
COLUMN_WIDTH = 48


def show(value: Any) -> str:
    """A value as a case file would write it (compact JSON); '(none)' for an item that is not there."""
    if value is MISSING:
        return "(none)"
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    return json.dumps(value, ensure_ascii=False, sort_keys=False, default=str)


def failure_lines(result: CaseResult) -> list[str]:
    """What a failed case shows under its FAIL line."""
    if result.error is not None:
        return [f"  error: {result.error}"]
    rows = [(f"  {m.position}: {m.what}", f"expected: {show(m.expected)}", f"actual: {show(m.actual)}")
            for m in result.mismatches]  # fmt: skip
    width = min(COLUMN_WIDTH, max(len(expected) for _, expected, _ in rows))
    lines = []
    for where, expected, actual in rows:
        lines.append(where)
        lines.append(f"    {expected.ljust(width)}  |  {actual}")
    return lines


def text_lines(result: CaseResult) -> list[str]:
    head = f"{'PASS' if result.passed else 'FAIL'} {result.case.name}"
    lines = [head] if result.passed else [head, *failure_lines(result)]
    return [safe_text(line) for line in lines]


def summary(results: Sequence[CaseResult], seconds: float) -> str:
    failed = sum(1 for r in results if not r.passed)
    return f"{len(results) - failed} passed, {failed} failed in {seconds:.2f} s"


_NOT_XML = re.compile("[^\x09\x0a\x0d\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _xml_text(text: str) -> str:
    """Text for an XML attribute or element: each line made safe (secrets masked, control characters escaped),
    then whatever XML 1.0 cannot hold dropped."""
    return _NOT_XML.sub("", "\n".join(safe_text(line) for line in text.split("\n")))


def junit_xml(results: Sequence[CaseResult]) -> str:
    """JUnit XML: one <testsuite> per case file, one <testcase> per case, a <failure> for each failed case."""
    root = ET.Element("testsuites", name="kpipe test")
    by_file: dict[str, list[CaseResult]] = {}
    for result in results:
        by_file.setdefault(result.case.file, []).append(result)
    total = failures = 0
    for file, group in by_file.items():
        failed = [r for r in group if not r.passed]
        total += len(group)
        failures += len(failed)
        suite = ET.SubElement(
            root, "testsuite", name=_xml_text(file), tests=str(len(group)), failures=str(len(failed)),
            errors="0", skipped="0", time=f"{sum(r.seconds for r in group):.3f}",
        )  # fmt: skip
        for result in group:
            case = ET.SubElement(
                suite, "testcase", name=_xml_text(result.case.name), classname=_xml_text(file),
                file=_xml_text(file), line=str(result.case.at().line), time=f"{result.seconds:.3f}",
            )  # fmt: skip
            if not result.passed:
                detail = failure_lines(result)
                message = result.error or f"{len(result.mismatches)} expectation(s) not met"
                failure = ET.SubElement(case, "failure", message=_xml_text(message), type="AssertionError")
                failure.text = _xml_text("\n".join(line.strip() for line in detail))
    root.set("tests", str(total))
    root.set("failures", str(failures))
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
