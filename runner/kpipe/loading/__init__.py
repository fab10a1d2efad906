"""Stage 1, load: read pipeline files safely, render their Jinja2 templates, parse YAML keeping file:line:col
of every key and value. files: the project root and the rules for reading (inside it, regular files, size
caps); templating: the bounded sandbox.

May import: kpipe.errors, kpipe.diagnostics, kpipe.logs, kpipe.redaction. Nothing here imports pydantic
models of the format or Kafka clients; project code (handlers) is imported only by `code`, and only when a
caller asks for it.

Imports: kpipe.errors, kpipe.diagnostics, kpipe.logs, kpipe.redaction.
"""
