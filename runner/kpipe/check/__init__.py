"""Stage 3, check: rules that span objects and files. Returns every diagnostic, never only the first.

May import: kpipe.schemas, kpipe.model, kpipe.loading and the base modules. `handlers` imports project code
through kpipe.loading.code, and only when asked (--check-handlers).
"""
