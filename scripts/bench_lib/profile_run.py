"""``python profile_run.py OUT.prof ARGS...``: run ``python -m albackup ARGS...`` under cProfile,
write the profile, and exit with albackup's own exit code (``python -m cProfile`` exits 0 even
when the profiled program failed)."""
import cProfile
import runpy
import sys

out, args = sys.argv[1], sys.argv[2:]
sys.argv = ["albackup", *args]
prof = cProfile.Profile()
code: object = 0
try:
    prof.runcall(runpy.run_module, "albackup", run_name="__main__", alter_sys=True)
except SystemExit as exc:
    code = exc.code
finally:
    prof.dump_stats(out)
if code is None:
    code = 0
elif not isinstance(code, int):
    print(code, file=sys.stderr)
    code = 1
sys.exit(code)
