"""Directories reached safely: every component of a path checked, from "/" down.

/dev/shm and /tmp are writable by everyone (docs/FORMAT.md, "Journal directory").
A directory there that another user made, or may write, can be renamed away and
replaced under us; a symbolic link planted there sends our files wherever it points
(the kernel follows it when ``fs.protected_symlinks`` is 0). Checking the final
directory is not enough: whoever controls a parent controls what the path names.

So ``open_directory`` walks the path from "/" one component at a time, each opened
with ``O_NOFOLLOW`` relative to the descriptor of the one before (openat), and checks
each one before it looks anything up in it:

* **owner**: root, this process's effective uid, or a uid trusted explicitly (the
  ``trusted_uids`` argument; without it, the environment variable
  ``JOURNAL_TRUSTED_UIDS``, uids separated by commas, e.g. ``JOURNAL_TRUSTED_UIDS=1001``
  for a compactor that runs as another user than the writer);
* **write permission**: a directory writable by others must have the sticky bit (as
  /dev/shm and /tmp, root-owned 1777), unless it is ours: whoever may write a
  directory without it may rename or replace what is in it. Group write is allowed:
  the owner chose that group (a desk sharing a journal with mode 0o660);
* **symbolic links** are followed only if the link itself belongs to root, us or a
  trusted uid (a link cannot be changed, only replaced by someone who may write the
  directory holding it, which was checked). Its target is read with readlink
  relative to that checked directory and walked the same way, at most
  ``MAX_SYMLINKS`` links per path.

Missing components can be created (``create_mode``, set exactly whatever the umask).
The result holds an open descriptor of the directory: names opened, created or
removed relative to it stay in that directory whatever happens to the path later
(a journal directory removed and made again is another directory).

This is a core module: it imports only journal._errors and the standard library.
"""

from __future__ import annotations

import errno
import os
import stat
from collections import deque
from collections.abc import Collection
from pathlib import Path
from typing import Final

from journal._errors import JournalError

TRUSTED_UIDS_ENV: Final = "JOURNAL_TRUSTED_UIDS"
MAX_SYMLINKS: Final = 40
"""Links followed while walking one path (Linux's own limit): a loop is an error."""
_DIRECTORY_FLAGS: Final = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_WRITABLE_BY_OTHERS: Final = stat.S_IWOTH
"""Group write is the owner's choice of whom to trust (a desk's group sharing a
journal, mode 0o660); write by everyone is nobody's choice."""
_CREATE_ATTEMPTS: Final = 3


class CheckedDirectory:
    """An open directory whose whole path was checked (``open_directory``).

    ``fd`` is the directory's descriptor (closed by ``close`` or the ``with`` block),
    ``path`` its path with the symbolic links followed replaced by their targets,
    ``identity`` its ``(st_dev, st_ino)``: compare it with a later stat of the path to
    tell whether the path still names this directory.
    """

    __slots__ = ("fd", "identity", "path")

    def __init__(self, fd: int, path: Path) -> None:
        self.fd = fd
        self.path = path
        info = os.fstat(fd)
        self.identity = (info.st_dev, info.st_ino)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> CheckedDirectory:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"CheckedDirectory({str(self.path)!r}, fd={self.fd})"


def trusted_uids_from_environment() -> frozenset[int]:
    """The uids named in ``JOURNAL_TRUSTED_UIDS`` (none if unset or empty)."""
    text = os.environ.get(TRUSTED_UIDS_ENV, "")
    uids = set()
    for item in text.replace(",", " ").split():
        if not item.isdigit():
            raise JournalError(
                f"{TRUSTED_UIDS_ENV}={text!r}: {item!r} is not a uid; give numeric uids "
                "separated by commas (e.g. 1001,1002), or unset it"
            )
        uids.add(int(item))
    return frozenset(uids)


def open_directory(
    path: str | os.PathLike[str],
    *,
    create_mode: int | None = None,
    create_parents: bool = True,
    follow_last: bool = True,
    own_last: bool = False,
    trusted_uids: Collection[int] | None = None,
    durable: bool = False,
) -> CheckedDirectory:
    """Open the directory ``path`` with every component checked (module docstring).

    ``create_mode``: create missing components with this mode (exactly; None: a
    missing component raises FileNotFoundError naming it); ``create_parents`` False:
    only the last one (as mkdir without -p). ``follow_last``: False
    refuses a symbolic link as the last component. ``own_last``: the directory itself
    must be ours, not a link (we write into it). ``trusted_uids``: owners accepted
    besides root and us (None: ``JOURNAL_TRUSTED_UIDS``). ``durable``: fsync each
    directory in which one was created (an archive's directory must survive a crash).

    Raises JournalError naming the component refused, its owner and mode, and what
    to do. The caller closes the result.
    """
    walk = _Walk(
        frozenset(trusted_uids_from_environment() if trusted_uids is None else trusted_uids),
        create_mode,
        create_parents,
        durable,
    )
    try:
        return walk.run(os.fspath(path), follow_last=follow_last and not own_last, own=own_last)
    finally:
        walk.close()


def prepare_journal_directory(path: Path, mode: int) -> CheckedDirectory:
    """Create the journal directory (and missing parents, with the same mode) or
    accept an existing one we own, its parents checked (``open_directory``): a
    journal under a directory another user controls could be moved or replaced
    under its writer. Modes are set exactly, whatever the umask. The caller locks
    the directory returned (never the path again) and closes it."""
    directory_mode = mode | ((mode & 0o444) >> 2)  # search permission wherever read is
    try:
        return open_directory(path, create_mode=directory_mode, own_last=True)
    except JournalError as error:
        raise JournalError(f"journal directory {path}: {error}") from None


class _Walk:
    """One walk of ``open_directory``: the descriptors held on the way, closed by
    ``close`` (the one returned is handed over, not closed)."""

    def __init__(
        self, trusted: frozenset[int], create_mode: int | None, create_parents: bool, durable: bool
    ) -> None:
        self.euid = os.geteuid()
        self.trusted = trusted | {0, self.euid}
        self.create_mode = create_mode
        self.create_parents = create_parents
        self.durable = durable
        self.held: list[tuple[int, Path]] = []  # "/" first, the current directory last
        self.links = 0

    def close(self) -> None:
        for fd, _ in self.held:
            os.close(fd)
        self.held = []

    def _start_at_root(self) -> None:
        self.close()
        fd = os.open("/", _DIRECTORY_FLAGS)
        self.held.append((fd, Path("/")))
        self._check_directory(os.fstat(fd), Path("/"), own=False)

    def run(self, text: str, *, follow_last: bool, own: bool) -> CheckedDirectory:
        if not text:
            raise JournalError("an empty path names no directory")
        if not text.startswith("/"):
            text = os.getcwd() + "/" + text  # getcwd: the physical path, links resolved
        self._start_at_root()
        pending = deque(text.split("/"))
        while pending:
            name = pending.popleft()
            if name in ("", "."):
                continue
            if name == "..":
                if len(self.held) > 1:  # the parent of "/" is "/"
                    os.close(self.held.pop()[0])
                continue
            last = all(part in ("", ".") for part in pending)
            parent_fd, parent = self.held[-1]
            component = parent / name
            target = self._open(parent_fd, name, component, last, follow_last)
            if isinstance(target, str):  # a link we may follow: walk its target instead
                if target.startswith("/"):
                    self._start_at_root()
                pending.extendleft(reversed(target.split("/")))
                continue
            self.held.append((target, component))
            if not (own and last):  # the last one's owner first, below
                self._check_directory(os.fstat(target), component, own=False)
        fd, where = self.held[-1]
        if own:
            self._check_directory(os.fstat(fd), where, own=True)
        self.held.pop()
        return CheckedDirectory(fd, where)

    def _open(
        self, parent_fd: int, name: str, component: Path, last: bool, follow_last: bool
    ) -> int | str:
        """The descriptor of ``name`` in the checked ``parent_fd`` (created if missing
        and asked to), or the target of the symbolic link it is."""
        created = False
        for _attempt in range(_CREATE_ATTEMPTS):
            try:
                fd = os.open(name, _DIRECTORY_FLAGS, dir_fd=parent_fd)
                break
            except FileNotFoundError:
                if self.create_mode is None or not (last or self.create_parents):
                    raise FileNotFoundError(
                        errno.ENOENT, f"{component} does not exist", str(component)
                    ) from None
                created = self._create(parent_fd, name, component)
            except NotADirectoryError:  # O_NOFOLLOW|O_DIRECTORY on a link: ENOTDIR
                return self._link_target(parent_fd, name, component, last and not follow_last)
            except OSError as error:
                raise JournalError(
                    f"cannot open {component}: {error.strerror}; check its permissions"
                ) from error
        else:
            raise JournalError(
                f"{component} vanished {_CREATE_ATTEMPTS} times right after it was created: "
                "something removes it; find what does"
            )
        if created:
            info = os.fstat(fd)
            if info.st_uid == self.euid:  # else not the one we made: the checks decide
                os.fchmod(fd, self.create_mode)  # type: ignore[arg-type]
        return fd

    def _create(self, parent_fd: int, name: str, component: Path) -> bool:
        """mkdir ``name`` in ``parent_fd``; False if something took the name first."""
        assert self.create_mode is not None
        try:
            os.mkdir(name, self.create_mode, dir_fd=parent_fd)
        except FileExistsError:
            return False
        except OSError as error:
            raise JournalError(
                f"cannot create directory {component}: {error.strerror}; create it "
                "yourself or choose another place"
            ) from error
        if self.durable:
            os.fsync(parent_fd)
        return True

    def _link_target(self, parent_fd: int, name: str, component: Path, refuse: bool) -> str:
        info = os.stat(name, dir_fd=parent_fd, follow_symlinks=False)
        if not stat.S_ISLNK(info.st_mode):
            raise JournalError(
                f"{component} is not a directory (mode {_describe(info.st_mode)}): "
                "remove it or choose another path"
            )
        target = os.readlink(name, dir_fd=parent_fd)
        if refuse:
            raise JournalError(
                f"{component} is a symlink (to {target}), not a directory: it must be a "
                "real directory; give the path of the directory itself"
            )
        if info.st_uid not in self.trusted:
            raise JournalError(
                f"refusing symlink {component} -> {target}: the link is owned by "
                f"uid={info.st_uid}, not by root or this user (uid={self.euid}); a link "
                "another user planted may point anywhere. Remove it and use a directory "
                f"(or a link) of your own, or trust that uid in {TRUSTED_UIDS_ENV}"
            )
        self.links += 1
        if self.links > MAX_SYMLINKS:
            raise JournalError(
                f"more than {MAX_SYMLINKS} symbolic links followed at {component}: a loop? "
                "give the path of the directory itself"
            )
        return target

    def _check_directory(self, info: os.stat_result, component: Path, *, own: bool) -> None:
        mode = _describe(info.st_mode)
        owner = info.st_uid
        if own and owner != self.euid:
            raise JournalError(
                f"{component} is owned by uid={owner} (mode {mode}), not by this user "
                f"(uid={self.euid}): it must be our own directory, since we write into it; "
                "remove it or choose another path"
            )
        if owner not in self.trusted:
            raise JournalError(
                f"refusing {component}: owned by uid={owner} (mode {mode}), not by root or "
                f"this user (uid={self.euid}); its owner can rename or replace what is "
                f"under it. Use a directory owned by root or by uid={self.euid}, or, if "
                f"uid={owner} is to be trusted, {TRUSTED_UIDS_ENV}={owner}"
            )
        shared = info.st_mode & _WRITABLE_BY_OTHERS and not info.st_mode & stat.S_ISVTX
        if shared and owner != self.euid:
            raise JournalError(
                f"refusing {component}: writable by others without the sticky bit "
                f"(mode {mode}, owner uid={owner}); anyone may rename or replace what is "
                "under it. Make it chmod o-w or chmod +t, or use another directory"
            )


def _describe(mode: int) -> str:
    """``0777`` for a directory, ``1777`` sticky: the permission bits as chmod takes them."""
    return f"{stat.S_IMODE(mode):04o}"


def replaceable_file_problem(path: Path) -> str | None:
    """Why ``path`` may not be replaced by a file written whole under a temporary name
    and renamed over it, or None: it exists and is not a regular file (a symbolic
    link, a device such as /dev/null, a FIFO, a directory), which a rename would
    destroy (as root, /dev/null itself)."""
    try:
        info = os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None  # nothing there (the caller says what is wrong with its directory)
    if stat.S_ISREG(info.st_mode):
        return None
    kinds = (
        (stat.S_ISLNK, "a symbolic link"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISDIR, "a directory"),
    )
    kind = next((name for test, name in kinds if test(info.st_mode)), "not a regular file")
    return (
        f"{path} is {kind}: outputs are written whole under a temporary name and renamed "
        "over the path, which would replace it; give the path of a regular file"
    )
