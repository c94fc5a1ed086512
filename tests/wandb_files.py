"""Read what an offline W&B run wrote to its `run-*.wandb` file (test helper).

The file is a 7-byte W&B header followed by a LevelDB-style record log (32 KiB blocks; each
chunk has a 7-byte header: crc32c, length, type FULL/FIRST/MIDDLE/LAST) of protobuf `Record`s
from `wandb.proto.wandb_internal_pb2`. wandb >= 0.2x reads it in its Go core only.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

BLOCK = 32768
HEADER = 7


def records(path: Path):
    from wandb.proto import wandb_internal_pb2 as pb

    data = Path(path).read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a W&B run file"
    pos, parts = HEADER, []
    while pos + HEADER <= len(data):
        left = BLOCK - pos % BLOCK
        if left < HEADER:
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + HEADER])
        chunk = data[pos + HEADER:pos + HEADER + length]
        pos += HEADER + length
        if kind == 0 and length == 0:
            continue
        parts.append(chunk)
        if kind in (1, 4):  # FULL or LAST
            r = pb.Record()
            r.ParseFromString(b"".join(parts))
            parts = []
            yield r


def _unwrap(v):
    """Some W&B versions store each top-level config value as {"value": ..., "desc": ...}."""
    return v["value"] if isinstance(v, dict) and "value" in v and set(v) <= {"value", "desc"} else v


def read_run(run_dir: Path) -> dict:
    """{"group", "tags", "name", "job_type", "config", "history": [{key: value}], "summary": {key: value}} of an
    offline run."""
    (f,) = list(Path(run_dir).glob("run-*.wandb"))
    out = {"group": None, "tags": [], "name": None, "job_type": None, "config": {}, "history": [], "summary": {}}
    for r in records(f):
        kind = r.WhichOneof("record_type")
        if kind == "run":
            out.update(group=r.run.run_group, tags=list(r.run.tags), name=r.run.display_name, job_type=r.run.job_type)
            out["config"].update({i.key: _unwrap(json.loads(i.value_json)) for i in r.run.config.update})
        elif kind == "config":
            out["config"].update({i.key: _unwrap(json.loads(i.value_json)) for i in r.config.update})
        elif kind == "history":
            out["history"].append({i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in r.history.item})
        elif kind == "summary":
            out["summary"].update({i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in r.summary.update})
    return out
