"""Stage 3, check: rules that span objects and files. Returns every diagnostic, never only the first.

Handlers and pydantic-model schemas are checked here without running them (imports: read the module's
source with ast); handlers: the --import-code check that does import them.

May import: kpipe.schemas, kpipe.model, kpipe.loading and the base modules.
"""
