"""Whether a file's text holds any Jinja syntax, told without importing Jinja.

Text without `{{`, `{%` or `{#` renders to itself (kpipe.loading.templating.render returns it untouched, and it
can hold no env() call either), so the loader imports the sandbox only for a file that has template syntax:
a project of plain YAML never pays for Jinja's import.
"""

from __future__ import annotations


def needs_rendering(text: str) -> bool:
    return "{{" in text or "{%" in text or "{#" in text
