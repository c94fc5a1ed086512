"""A one-node SLURM cluster for tests: Debian's munged, slurmctld and slurmd, started as root in a
temp folder with their own key, socket, ports and state (the machine's own SLURM and munge setup,
if any, is not touched), stopped and removed afterwards.

    with slurm_cluster() as env:          # env: os.environ plus SLURM_CONF for sbatch/srun/squeue
        subprocess.run([... "hydra/launcher=slurm", "hydra.launcher.partition=debug"], env=env)

Where it cannot start (not root, the packages missing, a daemon that will not come up), the test
is skipped with a message saying why. `.ci/run` installs the packages.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

DAEMONS = ("munged", "slurmctld", "slurmd", "sbatch", "sinfo", "scancel")
PARTITION = "debug"


def _which(name: str) -> str | None:
    return shutil.which(name) or next((str(p) for p in (Path("/usr/sbin") / name,) if p.exists()), None)


def _free_ports(n: int) -> list[int]:
    socks = []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def _memory_mb() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(int(line.split()[1]) / 1024 * 0.8)
    return 4000


def _conf(root: Path, host: str, ctld_port: int, d_port: int) -> str:
    return "\n".join([
        "ClusterName=concepts-test", f"SlurmctldHost={host}", "SlurmUser=root", "SlurmdUser=root",
        "AuthType=auth/munge", "CredType=cred/munge", f"AuthInfo=socket={root}/munge/munge.sock",
        "ProctrackType=proctrack/linuxproc", "TaskPlugin=task/none",
        "SelectType=select/cons_tres", "SelectTypeParameters=CR_Core", "SchedulerType=sched/builtin",
        "MpiDefault=none", "ReturnToService=2", "PlugStackConfig=/dev/null",
        f"StateSaveLocation={root}/state", f"SlurmdSpoolDir={root}/spool",
        f"SlurmctldPidFile={root}/slurmctld.pid", f"SlurmdPidFile={root}/slurmd.pid",
        f"SlurmctldLogFile={root}/log/slurmctld.log", f"SlurmdLogFile={root}/log/slurmd.log",
        f"SlurmctldPort={ctld_port}", f"SlurmdPort={d_port}",
        "AccountingStorageType=accounting_storage/none", "JobAcctGatherType=jobacct_gather/none",
        "JobCompType=jobcomp/none",
        f"NodeName={host} CPUs={os.cpu_count() or 1} RealMemory={_memory_mb()} State=UNKNOWN",
        f"PartitionName={PARTITION} Nodes={host} Default=YES MaxTime=INFINITE State=UP", ""])


@contextmanager
def slurm_cluster():
    missing = [d for d in DAEMONS if _which(d) is None]
    if missing:
        pytest.skip(f"no SLURM here ({', '.join(missing)} missing): apt-get install slurmctld slurmd slurm-client "
                    "munge (.ci/run does)")
    if os.geteuid() != 0:
        pytest.skip("the one-node SLURM cluster runs its daemons as root; run the tests as root (as CI does)")
    root = Path(tempfile.mkdtemp(prefix="slurm-", dir="/tmp"))  # short: the munge socket path has a length limit
    procs: list[subprocess.Popen] = []
    env = {**os.environ, "SLURM_CONF": str(root / "slurm.conf")}
    try:
        for sub in ("munge", "state", "spool", "log"):
            (root / sub).mkdir()
        (root / "munge").chmod(0o755)
        key = root / "munge" / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o400)
        out = subprocess.run([_which("munged"), "--force", f"--key-file={key}", f"--socket={root}/munge/munge.sock",
                              f"--pid-file={root}/munge/munged.pid", f"--log-file={root}/munge/munged.log",
                              f"--seed-file={root}/munge/seed"], capture_output=True, text=True, timeout=30)
        if out.returncode != 0:
            pytest.skip(f"munged would not start: {out.stderr.strip()[-300:]}")
        host = socket.gethostname().split(".")[0]
        (root / "slurm.conf").write_text(_conf(root, host, *_free_ports(2)))
        for daemon in ("slurmctld", "slurmd"):
            procs.append(subprocess.Popen([_which(daemon), "-D", "-f", str(root / "slurm.conf")], env=env,
                                          stdout=open(root / "log" / f"{daemon}.out", "w"), stderr=subprocess.STDOUT))
        deadline = time.time() + 60
        state = ""
        while time.time() < deadline:
            if any(p.poll() is not None for p in procs):
                break
            q = subprocess.run([_which("sinfo"), "-h", "-o", "%T"], env=env, capture_output=True, text=True)
            state = q.stdout.strip()
            if q.returncode == 0 and state in ("idle", "mixed"):
                break
            time.sleep(0.5)
        else:
            pass
        if state not in ("idle", "mixed"):
            logs = "; ".join((root / "log" / f).read_text()[-300:] for f in ("slurmctld.out", "slurmd.out")
                             if (root / "log" / f).exists())
            pytest.skip(f"the one-node SLURM cluster did not come up (node state {state!r}): {logs}")
        yield env
    finally:
        if _which("scancel") and (root / "slurm.conf").exists():
            subprocess.run([_which("scancel"), "--partition", PARTITION], env=env, capture_output=True, timeout=30)
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
        pid = root / "munge" / "munged.pid"
        if pid.exists():
            try:
                os.kill(int(pid.read_text().strip()), 15)
            except (ProcessLookupError, ValueError):
                pass
        time.sleep(0.5)
        shutil.rmtree(root, ignore_errors=True)
