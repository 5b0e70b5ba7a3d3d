"""Directories the journal writes into: created with exact modes, refused when not ours.

/dev/shm is world-writable: a directory anyone could have made or replaced is no
place for a journal (docs/FORMAT.md, "Journal directory").
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from journal._errors import JournalError


def prepare_journal_directory(path: Path, mode: int) -> None:
    """Create the journal directory (and missing parents, with the same mode) or
    accept an existing one we own. Modes are set exactly, whatever the umask."""
    directory_mode = mode | ((mode & 0o444) >> 2)  # search permission wherever read is
    missing = [path]
    while not missing[-1].parent.exists():
        missing.append(missing[-1].parent)
    for directory in reversed(missing):
        try:
            directory.mkdir(mode=directory_mode)
        except FileExistsError:
            continue
        os.chmod(directory, directory_mode, follow_symlinks=False)
    info = os.lstat(path)
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
        raise JournalError(f"journal path {path} exists and is not a directory (or is a symlink)")
    if info.st_uid != os.geteuid():
        raise JournalError(
            f"journal directory {path} is owned by uid={info.st_uid}, not this user "
            f"(uid={os.geteuid()}): in a shared tmpfs that is not ours to write"
        )
