"""`python -m kpipe`: the command line.

Imports: kpipe.cli.
"""

# `python -m kpipe` puts the working directory first on sys.path, so a file in the project named like a
# library kpipe imports (typing.py, yaml.py, email_validator.py) would run: project code, unasked. The package
# kpipe is imported before this module, so it is kpipe/__init__.py that takes the entry away, first thing.
from kpipe.cli import main

main()
