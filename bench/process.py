"""The operator as a real process, and what the kernel says about it.

CPU time and resident memory come from /proc (utime+stime of every thread, VmRSS), so
they count the operator exactly as a container runtime would, worker threads included.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections import deque
from pathlib import Path

from bench.audit import AuditLog
from bench.cluster import ROOT

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds_of(pid: int) -> float:
    """utime + stime of a whole process (every thread), in seconds."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    # The command name may hold spaces or parentheses: split after its closing one.
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


class CpuMeter:
    """CPU seconds of several processes over one window: where a phase's time went."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self._start: dict[str, float] = {}

    def start(self) -> None:
        """Open the window."""
        self._start = {name: cpu_seconds_of(pid) for name, pid in self.pids.items()}

    def stop(self) -> dict[str, float]:
        """Close it: CPU seconds each process used since start()."""
        return {
            name: round(cpu_seconds_of(pid) - self._start[name], 2)
            for name, pid in self.pids.items()
        }


def control_plane_pids(work_dir: Path) -> dict[str, int]:
    """The control plane's processes, found by their work directory on the command line."""
    pids: dict[str, int] = {}
    marker = str(work_dir).encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if not any(marker in arg for arg in argv):
            continue
        name = Path(argv[0].decode(errors="replace")).name
        if name in ("etcd", "kube-apiserver", "kube-controller-manager"):
            pids[name] = int(entry.name)
    return pids


class OperatorDied(RuntimeError):
    """The operator process exited while the benchmark needed it."""


class OperatorProcess:
    """`python -m nodecluster run`, as its ServiceAccount, with its own simulator directory."""

    def __init__(
        self,
        kubeconfig: Path,
        work_dir: Path,
        profile: bool = False,
        source: Path | None = None,
        name: str = "operator",
        args: tuple[str, ...] = (),
        env: dict[str, str] | None = None,
    ) -> None:
        self.kubeconfig = kubeconfig
        self.work_dir = work_dir
        self.profile = profile
        """Run under cProfile, writing operator-<start>.prof on a graceful stop."""
        self.source = source
        """Another checkout to run the operator from (its operator/ directory goes first
        on PYTHONPATH): a git worktree of an older commit, to compare against."""
        self.name = name
        """Names its log files: several processes share one work (and simulator) directory."""
        self.args = args
        """More arguments of `run` (e.g. --leader-elect for the failover phase's replicas)."""
        self.env = env or {}
        self.simulator_dir = work_dir / "simulator"
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def log_path(self) -> Path:
        """This start's log file."""
        return self.work_dir / f"{self.name}-{self.starts}.log"

    @property
    def pid(self) -> int:
        """The running process's id."""
        if self.proc is None:
            raise OperatorDied("the operator is not running")
        return self.proc.pid

    def start(self) -> None:
        """Start the operator (it prints to its log file, not to ours)."""
        self.starts += 1
        env = dict(os.environ)
        env["KUBECONFIG"] = str(self.kubeconfig)
        env["NODECLUSTER_SIMULATOR_DIR"] = str(self.simulator_dir)
        env.update(self.env)
        if self.source is not None:
            env["PYTHONPATH"] = str(self.source / "operator")
        profiler: list[str] = []
        if self.profile:
            profiler = ["-m", "cProfile", "-o", str(self.log_path.with_suffix(".prof"))]
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, *profiler, "-m", "nodecluster", "run", *self.args],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=str(ROOT),
                start_new_session=True,
            )

    def kill(self) -> None:
        """SIGKILL, as a node failure or an OOM kill would: no chance to clean up."""
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)
        self.proc = None

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 30 s."""
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=30)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            self.kill()
        self.proc = None

    def check(self) -> None:
        """Raise OperatorDied, with its log tail, if the process exited."""
        if self.proc is None or self.proc.poll() is not None:
            tail = "\n".join(
                self.log_path.read_text(errors="replace").splitlines()[-40:]
                if self.log_path.exists()
                else []
            )
            raise OperatorDied(f"the operator exited; last lines of {self.log_path}:\n{tail}")

    def cpu_seconds(self) -> float:
        """utime + stime of the whole process (all threads) so far."""
        self.check()
        return cpu_seconds_of(self.pid)

    def rss_kb(self) -> int:
        """Resident set size (VmRSS), KiB."""
        self.check()
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise OperatorDied("no VmRSS in /proc/<pid>/status")


async def wait_settled(
    operator: OperatorProcess,
    audit: AuditLog,
    *,
    quiet_seconds: float = 2.0,
    cpu_fraction: float = 0.02,
    interval: float = 0.1,
    give_up_after: float = 900.0,
    ignore: frozenset[str] = frozenset(),
) -> tuple[float, float]:
    """Wait until the operator has settled; return (monotonic, Unix) time it became quiet.

    Settled means: over `quiet_seconds`, the process used less than `cpu_fraction` of one
    core and the audit log holds no write of the operator's user received in that window.
    The returned time is the start of the first such window, so the confirmation wait
    itself is not counted. Writes to the resources in `ignore` do not count (a leader's
    Lease renewals, every 2 s, never stop).
    """
    samples: deque[tuple[float, float, float]] = deque()
    deadline = time.monotonic() + give_up_after
    while True:
        mono, wall, cpu = time.monotonic(), time.time(), operator.cpu_seconds()
        samples.append((mono, wall, cpu))
        while len(samples) > 1 and mono - samples[1][0] >= quiet_seconds:
            samples.popleft()
        first_mono, first_wall, first_cpu = samples[0]
        span = mono - first_mono
        if span >= quiet_seconds and cpu - first_cpu < cpu_fraction * span:
            last = audit.last_write_at(ignore)
            if last is None or last < first_wall:
                return first_mono, first_wall
        if mono > deadline:
            raise TimeoutError(f"the operator did not settle within {give_up_after:.0f}s")
        await asyncio.sleep(interval)
