"""Stage 3, check: rules that span objects and files. Returns every diagnostic, never only the first.

Handlers and pydantic-model schemas are checked in `imports` without running them (their source is read
with ast); `handlers` is the --import-code check that does import them.

May import: kpipe.schemas, kpipe.model, kpipe.loading and the base modules. `handlers` imports project code
through kpipe.loading.code, and only when asked (--import-code).

Imports: kpipe.schemas, kpipe.model, kpipe.loading, kpipe.errors, kpipe.diagnostics, kpipe.logs,
    kpipe.redaction.
"""
