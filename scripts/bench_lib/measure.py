"""Run one command (or a pipeline of commands) as child processes and measure each child.

Each command runs under ``/usr/bin/time -f '%e %U %S %M'`` (GNU time, Debian package ``time``),
which reports that command's own user and system CPU and peak RSS. A small launcher is needed:
Linux carries a process's peak RSS across ``exec``, so a command forked straight from this
(large) Python process would report at least this process's RSS. Without GNU time, the fallback
is ``rusage_wrapper.py`` run by ``python -S``, which reports its child's ``ru_maxrss`` the same
way; its own ~10 MB then sets a floor under every reading.

For a pipeline the stages run at the same time, so the pipeline's peak RSS is reported as the
*sum* of the stages' peaks (an upper bound of what it held at once) and its CPU as the sum of the
stages' CPU. Wall time runs from the first spawn to the last exit.

The database servers run on this machine, so the CPU they spend on a run is measured too, from
/proc: every ``postgres`` process (the postmaster's ``cutime``/``cstime`` hold the backends that
exited during the run) and the ``mariadbd``/``mysqld`` process (all its threads). The server is
let settle before the run (so earlier work is not charged to it) and after it (so the background
work a run leaves behind, such as InnoDB flushing the pages it dirtied, is charged to that run,
however short its wall time). Other sessions using the same servers would be counted too:
``machine_cpu_s`` (all cores, /proc/stat) lets the caller see a busy machine.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

CLK = os.sysconf("SC_CLK_TCK")
GNU_TIME = None if os.environ.get("BENCH_NO_GNU_TIME") else (
    "/usr/bin/time" if os.access("/usr/bin/time", os.X_OK) else shutil.which("gtime"))
WRAPPER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "rusage_wrapper.py")


def launcher() -> str:
    return "GNU time (/usr/bin/time -f)" if GNU_TIME else "python -S rusage_wrapper.py (ru_maxrss of its child)"


def _wrapped(argv: list[str], report: str) -> list[str]:
    if GNU_TIME:
        return [GNU_TIME, "-q", "-f", "%e %U %S %M", "-o", report, *argv]
    return [sys.executable, "-S", "-E", WRAPPER, report, *argv]


def _read_report(path: str) -> tuple[float, float, int]:
    """user s, sys s, maxrss KiB from the launcher's last line."""
    lines = [ln for ln in open(path).read().splitlines() if ln.strip()]
    _, user, sys_, rss = lines[-1].split()
    return float(user), float(sys_), int(rss)


class RunFailed(RuntimeError):
    pass


@dataclass
class Stage:
    argv: list[str]
    exit_code: int = 0
    user_s: float = 0.0
    sys_s: float = 0.0
    maxrss_kib: int = 0


@dataclass
class Measurement:
    wall_s: float
    cpu_s: float
    peak_rss_mb: float
    stages: list[Stage] = field(default_factory=list)
    server_cpu_s: float | None = None
    machine_cpu_s: float | None = None
    output_bytes: int | None = None
    stdout: str = ""

    def to_dict(self) -> dict:
        return {"wall_s": round(self.wall_s, 3), "cpu_s": round(self.cpu_s, 3),
                "server_cpu_s": None if self.server_cpu_s is None else round(self.server_cpu_s, 3),
                "machine_cpu_s": None if self.machine_cpu_s is None else round(self.machine_cpu_s, 3),
                "peak_rss_mb": round(self.peak_rss_mb, 1), "output_bytes": self.output_bytes,
                "stages": [{"argv": s.argv, "user_s": round(s.user_s, 3), "sys_s": round(s.sys_s, 3),
                            "maxrss_kib": s.maxrss_kib} for s in self.stages]}


def _proc_stat(pid: str) -> tuple[str, int, list[str]] | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read().decode("ascii", "replace")
    except OSError:
        return None
    comm = raw[raw.index("(") + 1: raw.rindex(")")]
    rest = raw[raw.rindex(")") + 2:].split()
    # rest[0] = state (field 3), so field n is rest[n - 3]
    return comm, int(rest[1]), rest


def machine_busy_s() -> float | None:
    """CPU seconds all cores have been busy since boot (/proc/stat: all but idle and iowait)."""
    try:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    return (sum(v[:8]) - v[3] - v[4]) / CLK


class ServerCpu:
    """CPU seconds the local database servers have used so far (None where none is visible).

    ``mine`` is a substring of the process titles of the server processes serving this benchmark
    (PostgreSQL backends show their database name): ``settle`` waits for those to be gone, so
    that a backend's time is counted once it has been reaped into the postmaster's ``cutime``
    rather than lost in between, and for the server to go quiet (background flushing after a
    load is otherwise charged to the next run).
    """

    def __init__(self, comms: Sequence[str], mine: set[str] | None = None) -> None:
        self.comms = set(comms)
        self.mine = mine      # the names of our databases (a live set: it grows as the run goes)

    def _mine_alive(self) -> bool:
        """True while one of our backends is alive, or any server process is a zombie."""
        if self.mine is None:
            return False
        needles = [f" {db} ".encode() for db in self.mine]
        for pid in os.listdir("/proc"):
            if pid.isdigit():
                st = _proc_stat(pid)
                if st and st[0] in self.comms:
                    if st[2][0] in "ZX":        # exited, not yet reaped: its time is in limbo
                        return True
                    try:
                        with open(f"/proc/{pid}/cmdline", "rb") as f:
                            title = f.read()
                        if any(n in title for n in needles):
                            return True
                    except OSError:
                        pass
        return False

    def settle(self, quiet_cpu: float = 0.05, window: float = 0.5, timeout: float = 30.0) -> None:
        """Wait (at most ``timeout`` s) until none of our backends is alive and the server used less
        than ``quiet_cpu`` CPU seconds in the last ``window`` seconds."""
        end = time.monotonic() + timeout
        while self._mine_alive() and time.monotonic() < end:
            time.sleep(0.02)
        prev = self.sample()
        if prev is None:
            return
        while time.monotonic() < end:
            time.sleep(window)
            cur = self.sample()
            if cur is None or cur - prev < quiet_cpu:
                return
            prev = cur

    def sample(self) -> float | None:
        procs = {}
        for pid in os.listdir("/proc"):
            if pid.isdigit():
                st = _proc_stat(pid)
                if st and st[0] in self.comms:
                    procs[int(pid)] = st
        if not procs:
            return None
        ticks = 0
        for pid, (_, ppid, rest) in procs.items():
            ticks += int(rest[11]) + int(rest[12])          # utime, stime (fields 14, 15)
            if ppid not in procs:                           # the root: its reaped children too
                ticks += int(rest[13]) + int(rest[14])      # cutime, cstime (fields 16, 17)
        return ticks / CLK


def wait_quiet(max_wait: float, busy_cores: float = 0.25, window: float = 1.0) -> float:
    """Wait (at most ``max_wait`` s) until the machine was busy less than ``busy_cores`` cores
    over ``window`` s; returns the seconds waited."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < max_wait:
        b0 = machine_busy_s()
        if b0 is None:
            break
        time.sleep(window)
        if machine_busy_s() - b0 < busy_cores * window:
            break
    return time.monotonic() - t0


def run(stages: Sequence[Sequence[str]], *, stdin: Path | None = None, stdout: Path | None = None,
        stderr: Path, cwd: Path | None = None, env: dict | None = None,
        server: ServerCpu | None = None, quiet_wait: float = 0.0) -> Measurement:
    """Run ``stages`` as a pipeline (stdin → first … last → stdout). Raises RunFailed on a
    non-zero exit of any stage, with the tail of the stderr log. First waits for the server to
    settle and, up to ``quiet_wait`` s, for the machine to be quiet."""
    stderr.parent.mkdir(parents=True, exist_ok=True)
    fin = open(stdin, "rb") if stdin else subprocess.DEVNULL
    fout = open(stdout, "wb") if stdout else subprocess.PIPE
    ferr = open(stderr, "ab")
    procs: list[subprocess.Popen] = []
    tmp = tempfile.mkdtemp(prefix="bench-rusage-")
    reports = [os.path.join(tmp, f"{i}.txt") for i in range(len(stages))]
    if server:
        server.settle()
    if quiet_wait:
        wait_quiet(quiet_wait)
    s0 = server.sample() if server else None
    b0 = machine_busy_s()
    t0 = time.perf_counter()
    try:
        prev = fin
        for i, argv in enumerate(stages):
            last = i == len(stages) - 1
            p = subprocess.Popen(_wrapped(list(argv), reports[i]), stdin=prev, stdout=fout if last else subprocess.PIPE,
                                 stderr=ferr, cwd=cwd, env=env)
            if i > 0 and prev is not None:
                prev.close()            # the next stage owns the read end now
            prev = p.stdout if not last else None
            procs.append(p)
        out = b""
        if fout is subprocess.PIPE:
            out = procs[-1].stdout.read()
            procs[-1].stdout.close()
        result = []
        for p in procs:
            p.wait()
        wall = time.perf_counter() - t0
        for argv, p, rep in zip(stages, procs, reports):
            try:
                user, sys_, rss = _read_report(rep)
            except (OSError, ValueError):
                user = sys_ = 0.0
                rss = 0
            result.append(Stage(list(argv), p.returncode, user, sys_, rss))
    finally:
        for p in procs:
            if p.returncode is None:
                p.kill()
                p.wait()
        if stdin:
            fin.close()
        if stdout:
            fout.close()
        ferr.close()
        shutil.rmtree(tmp, ignore_errors=True)
    b1 = machine_busy_s()
    if server:
        # Charge the run with the work it left behind (backends still exiting, InnoDB flushing
        # dirty pages, ...): a short native run would otherwise leave it to the next one.
        server.settle()
    s1 = server.sample() if server else None
    bad = [s for s in result if s.exit_code != 0]
    if bad:
        tail = stderr.read_text(errors="replace")[-3000:]
        raise RunFailed(f"{' '.join(bad[0].argv)} exited {bad[0].exit_code}; {stderr}:\n{tail}")
    m = Measurement(wall, sum(s.user_s + s.sys_s for s in result),
                    sum(s.maxrss_kib for s in result) / 1024, result,
                    None if s0 is None or s1 is None else s1 - s0)
    m.machine_cpu_s = None if b0 is None or b1 is None else b1 - b0
    m.stdout = out.decode("utf-8", "replace")
    return m


def tree_bytes(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
