"""One process at a time per run: `RUN/.lock` names the process that uses the run.

The lock file is created with O_CREAT | O_EXCL, which the operating system makes atomic, and holds
JSON {pid, host, started, command}. A second process gets a `RunLockedError` that names the owner.

A lock whose process is gone (same host, `os.kill(pid, 0)` finds no such process) is stale: it is
reported and replaced. A lock taken on another host (a shared filesystem) is never broken, because
nothing here can tell whether that process still runs; the error says how to remove it by hand.

The lock is re-entrant within a process (a count), so the API can lock around `train` and the trainer
lock again without deadlocking. Threads of one process share it: it keeps other processes out.
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any

from .errors import GenlabError, RunLockedError

LOCK_NAME = ".lock"
_BREAKER_NAME = ".lock.breaking"
_BREAKER_STALE_SECONDS = 30.0  # a breaker older than this was left by a process killed mid-break
_UNREADABLE_WAIT_SECONDS = 1.0  # an owner writes its JSON right after creating the file

log = logging.getLogger(__name__)


class _Held:
    """This process's hold on one lock file: what it wrote there and how many acquisitions are open."""

    def __init__(self, owner: dict[str, Any]):
        self.owner = owner
        self.count = 1


# real path of the lock file -> its hold; `owner["pid"]` tells a forked child that the hold is its parent's
_held: dict[str, _Held] = {}
_held_guard = threading.Lock()


def _pid_alive(pid: int) -> bool:
    if os.name == "nt":  # os.kill would terminate the process there: never call a lock stale
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: it exists under another user
        return True
    return True


def _read(path: Path) -> dict[str, Any] | None:
    """The lock's owner, or None if the file is gone; {} if it cannot be parsed."""
    try:
        owner = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}
    return owner if isinstance(owner, dict) else {}


def _read_settled(path: Path) -> dict[str, Any] | None:
    """Like `_read`, but waits briefly for an owner that has created the file and not yet written it."""
    give_up = time.monotonic() + _UNREADABLE_WAIT_SECONDS
    while True:
        owner = _read(path)
        if owner != {} or time.monotonic() > give_up:
            return owner
        time.sleep(0.05)


def _is_stale(owner: dict[str, Any]) -> bool:
    pid = owner.get("pid")
    if owner.get("host") != socket.gethostname() or not isinstance(pid, int) or pid <= 0:
        return False
    if pid == os.getpid():  # our PID but not held by us (see acquire): an earlier process had this PID
        return True
    return not _pid_alive(pid)


def _describe(owner: dict[str, Any]) -> str:
    if not owner:
        return "another process (its lock file cannot be read)"
    command = f" ({owner['command']})" if owner.get("command") else ""
    return f"PID {owner.get('pid')} on {owner.get('host')} since {owner.get('started')}{command}"


def _locked_error(run_dir: Path, path: Path, owner: dict[str, Any]) -> RunLockedError:
    if not owner:
        return RunLockedError(
            f"run {run_dir} is locked, but its lock file {path} cannot be read. If no genlab process uses this "
            f"run, delete the file by hand (rm {shlex.quote(str(path))}) and try again.")
    if owner.get("host") != socket.gethostname():
        return RunLockedError(
            f"run {run_dir} is in use by {_describe(owner)}. It was locked on another host, so genlab cannot "
            f"tell whether that process still runs and never removes this lock itself: wait for it to finish, "
            f"or stop it; if it is gone, delete the lock by hand on any host (rm {shlex.quote(str(path))}).")
    return RunLockedError(
        f"run {run_dir} is in use by {_describe(owner)}. Wait for it to finish, or stop it "
        f"(kill {owner.get('pid')}); if that process is gone, the lock is removed automatically.")


def _break_stale(path: Path, seen: dict[str, Any]) -> None:
    """Remove a stale lock unless someone replaced it since we read it.

    Two processes may find the same stale lock: a second O_EXCL file makes them break it one at a time,
    and the lock is deleted only if it still holds what was seen as stale.
    """
    breaker = path.with_name(_BREAKER_NAME)
    try:
        fd = os.open(breaker, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        try:
            if time.time() - breaker.stat().st_mtime > _BREAKER_STALE_SECONDS:
                breaker.unlink(missing_ok=True)
        except FileNotFoundError:
            pass
        time.sleep(0.05)  # another process is breaking it; the caller tries again
        return
    try:
        if _read(path) == seen:
            log.warning("removing the stale lock of %s: that process is gone", _describe(seen))
            path.unlink(missing_ok=True)
    finally:
        os.close(fd)
        breaker.unlink(missing_ok=True)


class RunLock:
    """Keep other processes out of a run directory while this one uses it.

    Use as a context manager (`with RunLock(run_dir): ...`) or call `acquire()` and `release()`.
    Acquiring again in the same process only counts; the file goes when the count returns to zero.
    """

    def __init__(self, run_dir: str | Path, command: str | None = None):
        """Prepare (not take) the lock of `run_dir`.

        Args:
            run_dir: The run directory; it must exist (create the run first).
            command: What the owner is doing, shown to whoever finds the run locked; default: this
                process's command line.
        """
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK_NAME
        self.command = command if command is not None else shlex.join(sys.argv)
        self._count = 0  # acquisitions through this object, so release cannot give up someone else's

    @property
    def _key(self) -> str:
        return os.path.realpath(self.path)

    def acquire(self) -> RunLock:
        """Take the lock, or count one more acquisition if this process holds it already.

        Returns:
            This object.

        Raises:
            RunLockedError: Another live process (or a process on another host) holds the lock.
            GenlabError: The run directory does not exist.
        """
        if not self.run_dir.is_dir():
            raise GenlabError(f"cannot lock run {self.run_dir}: the directory does not exist; create the run first")
        with _held_guard:
            held = _held.get(self._key)
            if held is not None and held.owner["pid"] == os.getpid():
                held.count += 1
            else:  # not held, or held by the parent of this forked process
                _held[self._key] = _Held(self._create())
            self._count += 1
        return self

    def _create(self) -> dict[str, Any]:
        owner = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                 "command": self.command}
        data = json.dumps(owner).encode()
        for _ in range(20):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                seen = _read_settled(self.path)
                if seen is None:  # released meanwhile: try again
                    continue
                if not seen or not _is_stale(seen):
                    raise _locked_error(self.run_dir, self.path, seen) from None
                _break_stale(self.path, seen)
                continue
            try:
                os.write(fd, data)  # one write: a reader sees the whole owner or an empty file
            finally:
                os.close(fd)
            return owner
        raise RunLockedError(f"could not lock run {self.run_dir}: the lock {self.path} kept changing hands; "
                             "another process is starting on this run, try again when it has")

    def release(self) -> None:
        """Give back one acquisition; the last one removes the lock file, if it is still ours.

        Raises:
            RuntimeError: This object does not hold the lock.
        """
        if self._count == 0:
            raise RuntimeError(f"release() of the lock of {self.run_dir} without a matching acquire()")
        with _held_guard:
            self._count -= 1
            held = _held.get(self._key)
            if held is None or held.owner["pid"] != os.getpid():
                return
            held.count -= 1
            if held.count > 0:
                return
            del _held[self._key]
            # Someone may have deleted our lock by hand and taken the run since: leave theirs alone.
            # (Between this read and the unlink another process could still take over; the window is tiny.)
            current = _read(self.path)
            if current is None:
                log.warning("the lock %s was already removed by another process", self.path)
            elif current != held.owner:
                log.warning("not removing the lock %s: it now belongs to %s", self.path, _describe(current))
            else:
                self.path.unlink(missing_ok=True)

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def is_locked(run_dir: str | Path) -> dict[str, Any] | None:
    """Who holds the lock of `run_dir`, or None if nobody does.

    Args:
        run_dir: The run directory.

    Returns:
        The owner as stored ({pid, host, started, command}, plus `path`), or None if the run is not
        locked or its lock is stale (the next `RunLock` replaces it). An unreadable lock file gives
        just {path}.
    """
    path = Path(run_dir) / LOCK_NAME
    owner = _read_settled(path)
    if owner is None or (owner and _is_stale(owner) and not _held_here(path)):
        return None
    return {**owner, "path": str(path)}


def _held_here(path: Path) -> bool:
    with _held_guard:
        held = _held.get(os.path.realpath(path))
        return held is not None and held.owner["pid"] == os.getpid()
