"""Atomic writes, fingerprints and stage manifests shared by every stage.

Every stage writes a `manifest.json` next to its outputs with its resolved config, the
fingerprints of its inputs, library versions, counts and a `complete` flag.
"""

from __future__ import annotations

import errno
import glob
import hashlib
import json
import os
import platform
import shutil
import socket
import tempfile
import uuid
from pathlib import Path
from typing import Any

from concepts.core.errors import UserError

MANIFEST = "manifest.json"
_UMASK = os.umask(0)
os.umask(_UMASK)


_HOST = socket.gethostname().replace("~", "-")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def remove_stale_temps(path: Path) -> int:
    """Delete the temp files a killed writer of `path` left beside it (`.<name>.<host>~<pid>.*.tmp*`
    of this host whose process is gone); a live writer's, or another host's, stay. Returns how many."""
    path = Path(path)
    removed = 0
    for f in path.parent.glob(f".{glob.escape(path.name)}.*~*.tmp*"):
        host, _, rest = f.name[len(path.name) + 2:].rpartition("~")  # <host>~<pid>.<random>.tmp[suffix]
        pid = rest.split(".", 1)[0]
        if host == _HOST and pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            if f.is_dir():
                shutil.rmtree(f, ignore_errors=True)
            else:
                f.unlink(missing_ok=True)
            removed += 1
    return removed


def atomic_write_text(path: Path, text) -> None:
    """Write `text` (a string, or an iterable of strings written one by one, so a large file
    never sits in memory whole) to `path` through a temp file in the same folder, then rename.
    The temp file names its host and process, so that the next write of `path` removes what a
    killed writer left (`remove_stale_temps`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{_HOST}~{os.getpid()}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the file the usual mode
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            if isinstance(text, str):
                fh.write(text)
            else:
                for part in text:
                    fh.write(part)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def atomic_publish_dir(tmp_dir: Path, final_dir: Path) -> None:
    """Move a fully written temp folder to its final name (one rename on the same disk). A folder
    already there is first renamed aside (a name of this process) and then removed, so a reader
    sees the old folder or the new one, and two processes publishing the same folder never fail."""
    final_dir = Path(final_dir)
    for _ in range(20):
        old = None
        if final_dir.exists():
            old = unique_tmp(final_dir)
            try:
                os.replace(final_dir, old)
            except FileNotFoundError:  # another publisher moved it first
                old = None
        try:
            os.replace(tmp_dir, final_dir)
            return
        except OSError as e:
            if e.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                raise
        finally:
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
    raise OSError(errno.EEXIST, f"could not publish {final_dir}: other processes keep replacing it")


def fingerprint(obj: Any) -> str:
    """A short, stable hash of a JSON-serialisable object."""
    blob = json.dumps(obj, sort_keys=True, default=str, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def library_versions() -> dict[str, str]:
    import numpy
    import torch
    import transformers

    from concepts import __version__

    return {
        "python": platform.python_version(),
        "latent-concepts": __version__,
        "numpy": numpy.__version__,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
    }


def read_manifest(folder: Path) -> dict[str, Any] | None:
    path = Path(folder) / MANIFEST
    if not path.exists():
        return None
    try:
        with open(path, encoding="utf-8") as fh:
            manifest = json.load(fh)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"{path} is not valid JSON ({e}); restore it or delete its folder to re-run the stage") from None
    missing = [k for k in ("stage", "fingerprint") if k not in manifest] if isinstance(manifest, dict) else ["stage"]
    if missing:
        raise UserError(
            f"{path} lacks {', '.join(missing)}: written by an older version or edited by hand; "
            "delete its folder to re-run the stage"
        )
    return manifest


def write_manifest(folder: Path, manifest: dict[str, Any]) -> None:
    atomic_write_json(Path(folder) / MANIFEST, manifest)


def unique_tmp(path: Path) -> Path:
    """A temp path beside `path`, unique to this process and call (parallel jobs writing the same
    file must not share one), with the same suffix (so writers that infer a format still do)."""
    path = Path(path)
    remove_stale_temps(path)
    return path.with_name(f".{path.name}.{_HOST}~{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp{path.suffix}")


def atomic_save_npy(path: Path, arr) -> None:
    """`np.save` through a temp file in the same folder, then rename."""
    import numpy as np

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = unique_tmp(path)
    try:
        with open(tmp, "wb") as fh:
            np.save(fh, arr)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
