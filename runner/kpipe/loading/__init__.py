"""Stage 1, load: read pipeline files safely, render their Jinja2 templates, parse YAML keeping file:line:col
of every key and value.

May import: kpipe.errors, kpipe.diagnostics, kpipe.logs. Nothing here imports pydantic models of the format or
Kafka clients; project code (handlers) is imported only by `code`, and only when a caller asks for it.
"""
