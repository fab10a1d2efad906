"""What a command does, as functions and classes the CLI and the Python API both call: load a project, make
sure its topics exist, run its consumer groups, produce a stream of events, export it for other tools.

The CLI above it only parses options, calls one of these, prints and picks the exit code; `kpipe.load` and
`Project.producer()` (kpipe.api) come through here too, so a command and the API cannot drift apart.

Imports: kpipe.export, kpipe.observe, kpipe.local, kpipe.runtime, kpipe.topics, kpipe.compilation,
    kpipe.check, kpipe.schemas, kpipe.model, kpipe.loading, kpipe.errors, kpipe.diagnostics, kpipe.logs,
    kpipe.redaction.
"""
