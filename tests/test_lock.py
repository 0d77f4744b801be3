"""genlab.lock: one process per run, a clear error for the second, stale locks replaced, re-entrance."""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import genlab
from genlab.errors import GenlabError, RunLockedError
from genlab.lock import LOCK_NAME, RunLock, is_locked

# Subprocesses import genlab.lock without genlab/__init__.py (torch and the API): a quick start.
PRELUDE = textwrap.dedent(f"""
    import sys, types
    package = types.ModuleType("genlab")
    package.__path__ = [{str(Path(genlab.__file__).parent)!r}]
    sys.modules["genlab"] = package
    from genlab.lock import RunLock
    from genlab.errors import RunLockedError
""")


def python(code: str, **kwargs) -> subprocess.CompletedProcess | subprocess.Popen:
    """Run `code` after the prelude; with stdin=PIPE, start it and return the process instead."""
    args = [sys.executable, "-c", PRELUDE + textwrap.dedent(code)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    if kwargs.get("stdin") == subprocess.PIPE:
        return subprocess.Popen(args, stdout=subprocess.PIPE, text=True, env=env, **kwargs)
    return subprocess.run(args, capture_output=True, text=True, timeout=60, env=env, **kwargs)


def write_lock(run_dir: Path, **owner) -> dict:
    owner = {"pid": 1, "host": socket.gethostname(), "started": "2024-01-01T00:00:00+0000", "command": "genlab train",
             **owner}
    (run_dir / LOCK_NAME).write_text(json.dumps(owner))
    return owner


def test_a_second_process_gets_a_clear_error(tmp_path):
    with RunLock(tmp_path, command="genlab train vae"):
        owner = json.loads((tmp_path / LOCK_NAME).read_text())
        assert owner["pid"] == os.getpid() and owner["host"] == socket.gethostname()
        assert owner["command"] == "genlab train vae" and owner["started"]
        assert is_locked(tmp_path) == {**owner, "path": str(tmp_path / LOCK_NAME)}
        result = python(f"""
            try:
                RunLock({str(tmp_path)!r}).acquire()
            except RunLockedError as e:
                print(e)
                sys.exit(3)
        """)
        assert result.returncode == 3, result.stderr
        message = result.stdout
        assert f"in use by PID {os.getpid()} on {socket.gethostname()} since {owner['started']}" in message
        assert "genlab train vae" in message
        assert "Wait for it to finish, or stop it" in message and "the lock is removed automatically" in message
    assert not (tmp_path / LOCK_NAME).exists() and is_locked(tmp_path) is None


def test_the_lock_is_reentrant_within_a_process(tmp_path):
    outer, inner = RunLock(tmp_path), RunLock(tmp_path)
    with outer:
        with inner:  # the API locks around train, the trainer locks again
            assert (tmp_path / LOCK_NAME).exists()
        assert (tmp_path / LOCK_NAME).exists(), "the inner release removed the outer's lock"
    assert not (tmp_path / LOCK_NAME).exists()
    with pytest.raises(RuntimeError, match="without a matching acquire"):
        outer.release()


def test_a_stale_lock_is_reported_and_replaced(tmp_path, caplog):
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(finished.stdout)  # run() has waited for it: no such process any more
    write_lock(tmp_path, pid=dead_pid)
    assert is_locked(tmp_path) is None  # stale: the next lock replaces it
    with caplog.at_level(logging.WARNING, logger="genlab.lock"):
        with RunLock(tmp_path):
            assert json.loads((tmp_path / LOCK_NAME).read_text())["pid"] == os.getpid()
    assert f"removing the stale lock of PID {dead_pid}" in caplog.text
    assert not list(tmp_path.iterdir())  # neither the lock nor the breaker is left


def test_a_lock_left_by_an_earlier_process_with_our_pid_is_stale(tmp_path):
    write_lock(tmp_path, pid=os.getpid())  # PIDs are reused, e.g. after a container restarts
    with RunLock(tmp_path):
        assert json.loads((tmp_path / LOCK_NAME).read_text())["started"] != "2024-01-01T00:00:00+0000"


def test_a_lock_from_another_host_is_never_broken(tmp_path):
    owner = write_lock(tmp_path, pid=999_999_999, host="elsewhere.example")
    with pytest.raises(RunLockedError, match=r"PID 999999999 on elsewhere\.example since 2024-01-01") as info:
        RunLock(tmp_path).acquire()
    assert "another host" in str(info.value) and f"rm {tmp_path / LOCK_NAME}" in str(info.value)
    assert json.loads((tmp_path / LOCK_NAME).read_text()) == owner
    assert is_locked(tmp_path)["host"] == "elsewhere.example"


def test_a_live_process_of_another_user_counts_as_alive(tmp_path, monkeypatch):
    def kill(pid, sig):
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr("genlab.lock.os.kill", kill)
    write_lock(tmp_path, pid=4242)
    with pytest.raises(RunLockedError, match="in use by PID 4242"):
        RunLock(tmp_path).acquire()


def test_release_leaves_a_lock_another_process_took_over(tmp_path, caplog):
    lock = RunLock(tmp_path).acquire()
    (tmp_path / LOCK_NAME).unlink()  # deleted by hand while we still run
    other = python(f"""
        with RunLock({str(tmp_path)!r}):
            print("locked", flush=True)
            sys.stdin.read()  # hold it until the test closes stdin
    """, stdin=subprocess.PIPE)
    try:
        assert other.stdout.readline().strip() == "locked"
        theirs = (tmp_path / LOCK_NAME).read_text()
        with caplog.at_level(logging.WARNING, logger="genlab.lock"):
            lock.release()
        assert (tmp_path / LOCK_NAME).read_text() == theirs
        assert f"it now belongs to PID {other.pid}" in caplog.text
    finally:
        other.stdin.close()
        other.wait(timeout=60)
    assert not (tmp_path / LOCK_NAME).exists()  # they released their own lock


def test_an_unreadable_lock_is_not_broken(tmp_path, monkeypatch):
    monkeypatch.setattr("genlab.lock._UNREADABLE_WAIT_SECONDS", 0.1)
    (tmp_path / LOCK_NAME).write_text("{not json")
    with pytest.raises(RunLockedError, match="cannot be read.*delete the file by hand"):
        RunLock(tmp_path).acquire()
    assert is_locked(tmp_path) == {"path": str(tmp_path / LOCK_NAME)}


def test_locking_a_missing_run_says_so(tmp_path):
    with pytest.raises(GenlabError, match="does not exist; create the run first"):
        RunLock(tmp_path / "missing").acquire()
