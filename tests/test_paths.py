"""journal._paths: a path is walked from "/" with every component checked, so a
directory or symlink another user controls in /dev/shm is refused (with its name,
owner and mode), and what we and root own is accepted. Real directories in /dev/shm;
the other user's files are made by a child that setuid()s to nobody (tests/_users)."""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

import pytest

import journal
from journal._paths import MAX_SYMLINKS, TRUSTED_UIDS_ENV, open_directory
from tests._procs import book
from tests._users import NOBODY, as_nobody, shared_directory
from tests.test_file_safety import umask

SEGMENT = 64 * 1024


def mode_of(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


@pytest.fixture(autouse=True)
def no_trusted_uids(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests say which uids they trust; none from the environment running them."""
    monkeypatch.delenv(TRUSTED_UIDS_ENV, raising=False)


# -- our own paths ------------------------------------------------------------------------


def test_missing_components_are_created_with_the_exact_mode(shm_dir: Path) -> None:
    target = shm_dir / "a" / "b" / "c"
    with umask(0o077), open_directory(target, create_mode=0o750) as directory:
        assert directory.path == target
        info = os.fstat(directory.fd)
        assert directory.identity == (info.st_dev, info.st_ino) == _identity(target)
        os.mkdir("inside", dir_fd=directory.fd)  # the descriptor is the directory
    assert [mode_of(shm_dir / part) for part in ("a", "a/b", "a/b/c")] == [0o750] * 3
    assert os.listdir(target) == ["inside"]
    assert mode_of(shm_dir) == 0o700  # existing ones are left as they are


def test_a_missing_component_without_create_mode_is_named(shm_dir: Path) -> None:
    with pytest.raises(FileNotFoundError, match=f"{shm_dir / 'absent'} does not exist"):
        open_directory(shm_dir / "absent" / "deeper")
    assert os.listdir(shm_dir) == []


def test_without_create_parents_only_the_last_component_is_made(shm_dir: Path) -> None:
    """As mkdir without -p: a reader makes <journal>/readers, never the journal."""
    with pytest.raises(FileNotFoundError, match=f"{shm_dir / 'journal'} does not exist"):
        open_directory(shm_dir / "journal" / "readers", create_mode=0o700, create_parents=False)
    assert os.listdir(shm_dir) == []
    (shm_dir / "journal").mkdir()
    with open_directory(shm_dir / "journal" / "readers", create_mode=0o750, create_parents=False):
        assert mode_of(shm_dir / "journal" / "readers") == 0o750


def test_relative_paths_and_dot_dot_are_walked_physically(
    shm_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (shm_dir / "real" / "sub").mkdir(parents=True)
    (shm_dir / "other").mkdir()
    (shm_dir / "other" / "link").symlink_to(shm_dir / "real" / "sub")
    monkeypatch.chdir(shm_dir)
    with open_directory("other/./link/..") as directory:
        # ".." of the link's target, as the kernel resolves it: not "other".
        assert directory.path == shm_dir / "real"
        assert directory.identity == _identity(shm_dir / "real")


def test_our_own_symlinks_are_followed_and_resolved(shm_dir: Path) -> None:
    (shm_dir / "real" / "deep").mkdir(parents=True)
    (shm_dir / "absolute").symlink_to(shm_dir / "real")
    (shm_dir / "relative").symlink_to("absolute/deep")
    with open_directory(shm_dir / "relative") as directory:
        assert directory.path == shm_dir / "real" / "deep"
        assert directory.identity == _identity(shm_dir / "real" / "deep")
    with pytest.raises(journal.JournalError, match=r"relative is a symlink \(to absolute/deep\)"):
        open_directory(shm_dir / "relative", follow_last=False)
    with pytest.raises(journal.JournalError, match="is a symlink"):
        open_directory(shm_dir / "absolute", own_last=True)


def test_a_symlink_loop_is_an_error(shm_dir: Path) -> None:
    (shm_dir / "a").symlink_to("b")
    (shm_dir / "b").symlink_to("a")
    with pytest.raises(journal.JournalError, match=f"more than {MAX_SYMLINKS} symbolic links"):
        open_directory(shm_dir / "a" / "c", create_mode=0o700)


def test_a_file_where_a_directory_should_be_is_named(shm_dir: Path) -> None:
    (shm_dir / "file").write_bytes(b"")
    with pytest.raises(journal.JournalError, match=r"file is not a directory \(mode 0644\)"):
        open_directory(shm_dir / "file" / "below", create_mode=0o700)


def test_trusted_uids_must_be_numbers(shm_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(TRUSTED_UIDS_ENV, "1001,operator")
    with pytest.raises(journal.JournalError, match=r"'operator' is not a uid"):
        open_directory(shm_dir)
    monkeypatch.setenv(TRUSTED_UIDS_ENV, " 1001, 1002 ")
    open_directory(shm_dir).close()


# -- another user's directories and links ---------------------------------------------------


def test_a_world_writable_parent_of_another_user_is_refused(shm_dir: Path) -> None:
    shared = shared_directory(shm_dir)
    attacker = shared / "attacker-parent"
    as_nobody("mkdir", "-m", "0777", attacker)
    journal_dir = attacker / "books"
    with pytest.raises(journal.JournalError) as refused:
        journal.Writer(journal_dir, segment_size=SEGMENT)
    message = str(refused.value)
    assert f"refusing {attacker}: owned by uid={NOBODY} (mode 0777)" in message
    assert TRUSTED_UIDS_ENV in message
    assert os.listdir(attacker) == []  # nothing made in it
    # Trusting its owner is not enough: anyone may write it (no sticky bit).
    with pytest.raises(journal.JournalError, match=r"writable by others .*mode 0777"):
        open_directory(journal_dir, create_mode=0o700, trusted_uids={NOBODY})
    assert os.listdir(attacker) == []


def test_a_parent_of_another_user_is_accepted_only_if_trusted(
    shm_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shared = shared_directory(shm_dir)
    parent = shared / "operator"
    as_nobody("mkdir", "-m", "0755", parent)
    as_nobody("mkdir", "-m", "0777", parent / "journals")  # ours to write, not to trust
    with pytest.raises(journal.JournalError, match=f"owned by uid={NOBODY} \\(mode 0755\\)"):
        open_directory(parent / "journals")
    monkeypatch.setenv(TRUSTED_UIDS_ENV, str(NOBODY))
    with pytest.raises(journal.JournalError, match="writable by others"):
        open_directory(parent / "journals")
    with open_directory(parent) as directory:
        assert directory.path == parent
    monkeypatch.delenv(TRUSTED_UIDS_ENV)
    with open_directory(parent, trusted_uids=[NOBODY]) as directory:
        assert directory.path == parent


def test_a_journal_directory_of_another_user_is_refused(shm_dir: Path) -> None:
    shared = shared_directory(shm_dir)
    as_nobody("mkdir", "-m", "0755", shared / "books")
    with pytest.raises(journal.JournalError) as refused:
        journal.Writer(shared / "books", segment_size=SEGMENT)
    assert f"is owned by uid={NOBODY} (mode 0755), not by this user" in str(refused.value)
    assert str(shared / "books") in str(refused.value)


def test_a_symlink_planted_by_another_user_is_not_followed(shm_dir: Path) -> None:
    """With fs.protected_symlinks=0 the kernel would follow it: the walk does not."""
    shared = shared_directory(shm_dir)
    victim = shm_dir / "victim"
    victim.mkdir(mode=0o700)
    planted = shared / "journals"
    as_nobody("ln", "-s", victim, planted)
    assert os.lstat(planted).st_uid == NOBODY
    with pytest.raises(journal.JournalError) as refused:
        journal.Writer(planted / "books", segment_size=SEGMENT)
    message = str(refused.value)
    assert f"refusing symlink {planted} -> {victim}: the link is owned by uid={NOBODY}" in message
    assert os.listdir(victim) == []


def test_a_root_owned_sticky_parent_and_our_own_symlink_are_accepted(shm_dir: Path) -> None:
    shared = shared_directory(shm_dir)  # root-owned 1777, as /dev/shm
    ours = shm_dir / "ours"
    ours.mkdir(mode=0o700)
    (shared / "link").symlink_to(ours)
    assert os.lstat(shared / "link").st_uid == os.geteuid()
    for journal_dir in (shared / "books", shared / "link" / "books"):
        with journal.Writer(journal_dir, segment_size=SEGMENT) as writer:
            writer.append_orderbook(*book(0))
    assert (ours / "books").is_dir() and (shared / "books").is_dir()
    assert mode_of(ours / "books") == mode_of(shared / "books") == 0o700


def _identity(path: Path) -> tuple[int, int]:
    info = os.stat(path)
    return info.st_dev, info.st_ino


def test_a_group_writable_directory_of_a_trusted_user_is_accepted(
    shm_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A desk's group sharing a journal (writer mode 0o660 makes its directory 0770):
    group write is its owner's choice of whom to trust, unlike write by everyone."""
    shared = shared_directory(shm_dir)
    as_nobody("mkdir", "-m", "0770", shared / "desk")
    monkeypatch.setenv(TRUSTED_UIDS_ENV, str(NOBODY))
    with open_directory(shared / "desk") as directory:
        assert directory.path == shared / "desk"


def test_a_reader_refuses_a_journal_under_a_foreign_directory(shm_dir: Path) -> None:
    """Books under a directory another user controls could be planted: not read."""
    shared = shared_directory(shm_dir)
    as_nobody("mkdir", "-m", "0777", shared / "planted")
    journal_dir = shared / "planted" / "books"
    with journal.Writer(shm_dir / "real", segment_size=64 * 1024) as writer:
        writer.append_orderbook("upbit", "BTC-KRW", 1, 1, [[1.0, 1.0]], [[2.0, 1.0]])
    shutil.copytree(shm_dir / "real", journal_dir)  # ours, but under nobody's directory
    with pytest.raises(journal.JournalError, match=f"owned by uid={NOBODY}"):
        journal.Reader(journal_dir, metrics=False)


def test_a_reader_does_not_follow_a_journal_recreated_by_another_user(shm_dir: Path) -> None:
    """The journal removed, then made again as a symlink another user planted to their
    own journal: the reader following the new incarnation refuses it, reads nothing."""
    shared = shared_directory(shm_dir)
    path = shared / "books"
    with journal.Writer(path, segment_size=64 * 1024) as writer:
        writer.append_orderbook("upbit", "BTC-KRW", 1, 1, [[1.0, 1.0]], [[2.0, 1.0]])
    with journal.Writer(shm_dir / "theirs", segment_size=64 * 1024) as theirs:
        theirs.append_orderbook("upbit", "BTC-KRW", 1, 666, [[1.0, 1.0]], [[2.0, 1.0]])
    reader = journal.Reader(path, idle="spin", metrics=False)
    try:
        assert [r.sequence for r in reader.available()] == [1]
        shutil.rmtree(path)
        planted = shared / "planted"
        as_nobody("mkdir", "-m", "0755", planted)
        for segment in (shm_dir / "theirs").glob("*.journal"):
            shutil.copy(segment, planted / segment.name)
        as_nobody("ln", "-s", planted, path)
        with pytest.raises(journal.JournalError, match=f"uid={NOBODY}"):
            reader.poll(5.0)  # the reader looks for the new incarnation every 100 ms
    finally:
        reader.close()
