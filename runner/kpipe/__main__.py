"""`python -m kpipe`: the command line.

Imports: kpipe.cli.
"""

import os
import sys

# `python -m kpipe` puts the working directory first on sys.path, so a file in the project named like a
# library kpipe imports lazily (email_validator.py, yaml.py) would run: project code, unasked. kpipe itself
# is already imported, so the entry can go (as `python -P` would do).
if sys.path and sys.path[0] in ("", os.getcwd()):
    del sys.path[0]

from kpipe.cli import main  # noqa: E402

main()
