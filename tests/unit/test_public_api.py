"""`import kpipe` is the public API: exactly what __all__ lists, nothing leaked, and cheap to import."""

from __future__ import annotations

import subprocess
import sys

import kpipe
from kpipe import errors


def test_dir_is_the_public_api() -> None:
    assert sorted(dir(kpipe)) == sorted(kpipe.__all__)
    assert "load" in kpipe.__all__ and "Project" in kpipe.__all__ and "Producer" in kpipe.__all__


def test_every_public_name_resolves() -> None:
    from kpipe.api import Project
    from kpipe.runtime.producer import Producer

    for name in kpipe.__all__:
        assert getattr(kpipe, name) is not None, name
    assert kpipe.Project is Project and kpipe.Producer is Producer


# Errors kpipe raises and catches itself: they never reach a user.
INTERNAL_ERRORS = {"GitFailed"}


def test_every_error_users_catch_is_exported() -> None:
    tree = {
        name
        for name, value in vars(errors).items()
        if isinstance(value, type) and issubclass(value, errors.KpipeError) and name not in INTERNAL_ERRORS
    }
    assert tree <= set(kpipe.__all__), f"export these from kpipe: {sorted(tree - set(kpipe.__all__))}"
    for name in tree:
        assert getattr(kpipe, name) is getattr(errors, name)


def test_unknown_name_is_an_attribute_error() -> None:
    try:
        kpipe.no_such_thing  # noqa: B018
    except AttributeError as exc:
        assert "no_such_thing" in str(exc)
    else:
        raise AssertionError("kpipe.no_such_thing resolved")


def test_import_and_errors_load_no_kafka_client_or_pydantic() -> None:
    code = (
        "import sys, kpipe\n"
        "kpipe.KpipeError, kpipe.EventInvalid, kpipe.PipelineInvalid\n"
        "heavy = sorted(m for m in ('confluent_kafka', 'pydantic', 'yaml') if m in sys.modules)\n"
        "assert not heavy, heavy\n"
        "kpipe.Producer\n"
        "assert 'confluent_kafka' in sys.modules\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
