"""Exports: the project described for other tools — AsyncAPI 3.0, a topology graph (Mermaid, DOT), Kubernetes
manifests and a Dockerfile.

Each export is a pure function from a loaded Project (compiled objects, plus the spec for positions and the
`deploy:` section) to text or plain data. May import everything below the CLI (compilation, model, loading,
schemas); never runtime, local or the CLI, and never project code: pydantic-model schemas are imported by the
loader only when the command was given --import-code.

Imports: kpipe (for __version__), kpipe.compilation, kpipe.check, kpipe.schemas, kpipe.model, kpipe.loading,
    kpipe.errors, kpipe.diagnostics, kpipe.logs, kpipe.redaction.
"""
