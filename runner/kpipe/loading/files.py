"""Which files a project may read, and reading them safely.

Pipeline files, values files and schema files are written by whoever opens a pull request, so every path they
name is hostile until checked:

- the project root bounds what can be read: the nearest ancestor of the first path given that holds `.git`
  or `pyproject.toml`; else the working directory when it holds the first path; else the directory above
  the first path's directory (the usual `project/pipelines/` layout). `--root DIR` overrides it;
- a path that resolves outside the root (`../../secret.yaml`, `/etc/shadow`, a symlink that leaves the
  project) is refused, and the message names the path as written, never what is in the file;
- only regular files are read: FIFOs, devices and sockets are refused before they are opened, and the
  opened descriptor is checked again (it is opened non-blocking, so a FIFO swapped in cannot hang us);
- a symlink loop is one error;
- every file has a size cap, and so has the whole project.
"""

from __future__ import annotations

import errno
import os
import re
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from kpipe.diagnostics import Diagnostic, Position, error

# A pipeline or schema file bigger than this is almost certainly a mistake (a data dump passed by accident).
MAX_FILE_BYTES = 5 * 1024 * 1024
# Everything one command reads from a project, all files together.
MAX_PROJECT_BYTES = 64 * 1024 * 1024
ROOT_MARKERS = (".git", "pyproject.toml")


def project_root(paths: Iterable[Path | str], override: Path | str | None = None) -> Path:
    """The directory a project's files must stay inside (absolute, symlinks resolved)."""
    if override is not None:
        return Path(override).resolve()
    first = next(iter(paths), None)
    cwd = Path.cwd().resolve()
    if first is None:
        return cwd
    start = Path(os.path.normpath(Path(first).absolute()))
    base = start if start.is_dir() else start.parent
    for directory in (base, *base.parents):
        if _linked_below(directory, cwd):
            continue
        if any((directory / marker).exists() for marker in ROOT_MARKERS):
            return directory.resolve()
    if base == cwd or cwd in base.parents:
        return cwd
    return base.resolve().parent


def _linked_below(directory: Path, cwd: Path) -> bool:
    """Whether `directory` is reached through a symbolic link below the working directory. The command line
    chose the working directory; what is below it is the project's, so such a link (`pipelines` -> a
    directory elsewhere holding a pyproject.toml) must not make the root."""
    if directory != cwd and cwd not in directory.parents:
        return False
    path = cwd
    for part in directory.relative_to(cwd).parts:
        path = path / part
        if path.is_symlink():
            return True
    return False


# A control character in a file or directory name (a newline, ESC, DEL, ...): git stores such names without
# complaint, and a name is written into exports, logs and messages.
CONTROL_IN_NAME = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def _control_in_name(path: Path) -> str | None:
    """The first part of `path` whose name holds a control character, or None."""
    for part in path.parts:
        if CONTROL_IN_NAME.search(part):
            return part
    return None


def named_with_control(name: str, position: Position) -> Diagnostic:
    return error(
        f"the name '{name}' holds a control character; project files and directories may not",
        position,
        code="path-control-character",
        hint="rename it with printable characters only",
    )


def _mib(n: int) -> str:
    return f"{n / 1024 / 1024:.1f} MiB"


@dataclass
class ProjectFiles:
    """Reads files for one project: inside `root`, regular files only, within the size caps."""

    root: Path
    max_file_bytes: int = MAX_FILE_BYTES
    max_project_bytes: int = MAX_PROJECT_BYTES
    read_bytes: int = 0

    def __post_init__(self) -> None:
        self.root = Path(self.root).resolve()

    def check(
        self, path: Path | str, written: str, position: Position
    ) -> tuple[Path | None, list[Diagnostic]]:
        """The resolved path when `path` may be read; otherwise None and one diagnostic at `position`.

        `written` is the path as the user wrote it: the only form a message shows.
        """
        # Outside the root first, whether the path exists or not: a file must not learn what is out there. A loop
        # cannot be resolved that far: the strict resolve below names it.
        try:
            loose: Path | None = Path(path).resolve(strict=False)
        except RuntimeError:  # Python < 3.13 raises this for a loop
            loose = None
        except OSError as exc:
            if exc.errno != errno.ELOOP:
                return None, [self._outside(written, position)]
            loose = None
        if loose is not None and not self._holds(loose):
            return None, [self._outside(written, position)]
        try:
            resolved = Path(path).resolve(strict=True)
        except RuntimeError:  # Python < 3.13 raises this for a loop
            return None, [self._loop(written, position)]
        except FileNotFoundError:
            return None, [error(f"'{written}': no such file", position, code="path-missing")]
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                return None, [self._loop(written, position)]
            return None, [
                error(f"'{written}': cannot be read: {exc.strerror or exc}", position, code="file-unreadable")
            ]
        if not self._holds(resolved):
            return None, [self._outside(written, position)]
        named = _control_in_name(resolved.relative_to(self.root)) or _control_in_name(Path(written))
        if named is not None:
            return None, [named_with_control(named, position)]
        return resolved, []

    def inside(self, path: Path | str) -> bool:
        try:
            resolved = Path(path).resolve(strict=False)
        except (OSError, RuntimeError):
            return False
        return self._holds(resolved)

    def _holds(self, resolved: Path) -> bool:
        return resolved == self.root or self.root in resolved.parents

    def _outside(self, written: str, position: Position) -> Diagnostic:
        return error(
            f"'{written}' is outside the project root {self.root}",
            position,
            code="path-outside-root",
            hint="keep pipeline, values and schema files inside the project, or pass --root",
        )

    @staticmethod
    def _loop(written: str, position: Position) -> Diagnostic:
        return error(f"'{written}': symbolic link loop", position, code="file-symlink-loop")

    def read_bytes_of(
        self, path: Path, written: str, position: Position
    ) -> tuple[bytes | None, list[Diagnostic]]:
        """The bytes of a regular file inside the root, or None and one diagnostic."""
        resolved, problems = self.check(path, written, position)
        if resolved is None:
            return None, problems
        try:
            info = os.stat(resolved)
            if stat.S_ISDIR(info.st_mode):
                return None, [error("is a directory, expected a file", position, code="file-unreadable")]
            if not stat.S_ISREG(info.st_mode):
                return None, [self._not_regular(info.st_mode, written, position)]
            if info.st_size > self.max_file_bytes:
                return None, [self._too_large(info.st_size, position)]
            # Non-blocking: a FIFO swapped in after the check cannot hang the read. No-follow: nor can a
            # symlink swapped in for the (already resolved) file lead outside the root.
            flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
            fd = os.open(resolved, flags | getattr(os, "O_NOFOLLOW", 0))
            try:
                info = os.fstat(fd)  # the file opened may not be the one checked
                if not stat.S_ISREG(info.st_mode):
                    return None, [self._not_regular(info.st_mode, written, position)]
                chunks, size = [], 0
                while size <= self.max_file_bytes:
                    chunk = os.read(fd, min(1 << 20, self.max_file_bytes + 1 - size))
                    if not chunk:
                        break
                    chunks.append(chunk)
                    size += len(chunk)
            finally:
                os.close(fd)
        except PermissionError:
            return None, [error("permission denied: cannot read the file", position, code="file-unreadable")]
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                return None, [self._loop(written, position)]
            return None, [
                error(f"cannot read the file: {exc.strerror or exc}", position, code="file-unreadable")
            ]
        if size > self.max_file_bytes:
            return None, [self._too_large(size, position)]
        self.read_bytes += size
        if self.read_bytes > self.max_project_bytes:
            return None, [
                error(
                    f"the project's files add up to more than {_mib(self.max_project_bytes)}",
                    position,
                    code="project-too-large",
                    hint="pass fewer files, or split the project",
                )
            ]
        return b"".join(chunks), []

    def _too_large(self, size: int, position: Position) -> Diagnostic:
        return error(
            f"file is too large ({_mib(size)}; the limit is {self.max_file_bytes // 1024 // 1024} MiB)",
            position,
            code="file-too-large",
        )

    @staticmethod
    def _not_regular(mode: int, written: str, position: Position) -> Diagnostic:
        kinds = {
            stat.S_ISFIFO: "a named pipe (FIFO)",
            stat.S_ISCHR: "a character device",
            stat.S_ISBLK: "a block device",
            stat.S_ISSOCK: "a socket",
        }
        kind = next((text for test, text in kinds.items() if test(mode)), "not a regular file")
        return error(f"'{written}' is {kind}; only regular files are read", position, code="file-not-regular")
