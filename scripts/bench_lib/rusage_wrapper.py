"""Fallback when GNU time is missing: ``python -S rusage_wrapper.py REPORT CMD ARGS...`` runs CMD
and writes ``wall user sys maxrss_kib`` of that child into REPORT (like ``time -f '%e %U %S %M'``).
Its exit code is the child's."""
import os
import subprocess
import sys
import time

report, argv = sys.argv[1], sys.argv[2:]
t0 = time.perf_counter()
p = subprocess.Popen(argv)
_, status, ru = os.wait4(p.pid, 0)
p.returncode = code = os.waitstatus_to_exitcode(status)
with open(report, "w") as f:
    f.write(f"{time.perf_counter() - t0:.3f} {ru.ru_utime:.3f} {ru.ru_stime:.3f} {ru.ru_maxrss}\n")
sys.exit(code if code >= 0 else 128 - code)
