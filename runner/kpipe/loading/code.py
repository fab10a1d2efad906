"""Importing the project's own code: handlers named `package.module:function`, and the import path they need.

Low in the stack so that both the checks (`validate --import-code`) and the runtime (the worker) import a
handler the same way, with the same one-line errors. Importing a module runs it: only call this when the user
asked for project code to run.
"""

from __future__ import annotations

import importlib
import inspect
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from kpipe.errors import HandlerError


@contextmanager
def import_paths(paths: Iterable[str]) -> Iterator[None]:
    """Make the project's own directories importable while its models/handlers are imported."""
    added = [p for p in paths if p not in sys.path]
    sys.path[:0] = added
    try:
        yield
    finally:
        for p in added:
            if p in sys.path:
                sys.path.remove(p)


def load_handler(target: str, import_paths: Sequence[str] = ()) -> Callable[..., Any]:
    """Import the handler named "package.module:function"; HandlerError with one clear line otherwise."""
    module_name, sep, attr = target.partition(":")
    if not sep or not module_name or not attr:
        raise HandlerError(f"handler '{target}' must be written as 'module.path:function'")
    for path in reversed(import_paths):
        if path not in sys.path:
            sys.path.insert(0, path)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        where = f" (searched {', '.join(import_paths)} and sys.path)" if import_paths else ""
        raise HandlerError(f"handler '{target}': cannot import module '{exc.name}'{where}") from None
    except Exception as exc:  # a handler module that fails while importing: name the error, not a traceback
        raise HandlerError(
            f"handler '{target}': importing '{module_name}' failed: {type(exc).__name__}: {exc}"
        ) from None
    func: Any = module
    for part in attr.split("."):
        try:
            func = getattr(func, part)
        except AttributeError:
            raise HandlerError(
                f"handler '{target}': module '{module_name}' has no attribute '{attr}'"
            ) from None
    if not callable(func):
        raise HandlerError(f"handler '{target}' is a {type(func).__name__}, not a function")
    _check_arity(target, func)
    return func


def _check_arity(target: str, func: Callable[..., Any]) -> None:
    try:
        inspect.signature(func).bind(None, None)
    except TypeError:
        raise HandlerError(f"handler '{target}' must accept two arguments: (event, ctx)") from None
    except ValueError:  # builtins without a signature: let the call decide
        pass
