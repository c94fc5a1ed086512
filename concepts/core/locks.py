"""Locks on the units that several processes can reach at once (a layer's clustering, a concepts
folder's annotation and views, a probe or ranking folder), so that two runs on one workspace, or
the jobs of a parallel sweep, compute each unit once and never overwrite a finished file.

A lock is a `flock` on `<folder>/.<name>.lock`. It works across processes of one host and, on
Linux, across hosts on NFS (where the kernel maps `flock` to POSIX record locks). The holder removes
the lock file when it is done; a waiter that wakes on a removed file tries again, so a lock file
is never left once the unit is finished (a killed holder's file is removed by the next holder).
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

log = logging.getLogger(__name__)


def _holder(path: Path) -> str:
    try:
        text = path.read_text(encoding="utf-8").strip()
    except OSError:
        return "another process"
    return f"process {text}" if text else "another process"


@contextmanager
def unit_lock(folder: Path, name: str, what: str) -> Iterator[bool]:
    """Hold the lock `name` of `folder` (made if missing). Yields whether this process had to wait
    for another holder (then the caller should look again for what that holder wrote). `what`
    names the unit in the message logged while waiting."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f".{name}.lock"
    waited = False
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as e:
                if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise
                log.info("waiting for %s: %s is computing it (lock %s)", what, _holder(path), path)
                t0 = time.perf_counter()
                fcntl.flock(fd, fcntl.LOCK_EX)
                waited = True
                log.info("%s: the other process is done after %.0f s; using what it wrote", what,
                         time.perf_counter() - t0)
            try:
                same = os.fstat(fd).st_ino == os.stat(path).st_ino
            except FileNotFoundError:  # the holder removed it as we took it: take the new one
                same = False
            if not same:
                os.close(fd)
                continue
        except BaseException:
            os.close(fd)
            raise
        break
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{socket.gethostname()}~{os.getpid()}".encode())
        yield waited
    finally:
        try:
            os.unlink(path)  # before unlocking: a waiter then sees a removed file and retries
        except FileNotFoundError:
            pass
        os.close(fd)
