"""Event schemas: JSON Schema → pydantic models (`schema_models`), Schema Registry compatibility rules
(`compat`), previous versions from git (`history`) and `validate --against` (`evolution`).

May import: kpipe.model, kpipe.loading and the base modules.

Imports: kpipe.model, kpipe.loading, kpipe.errors, kpipe.diagnostics, kpipe.logs, kpipe.redaction.
"""
