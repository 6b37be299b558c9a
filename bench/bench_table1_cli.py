"""Wall time and peak memory of the Table 1 command line on the 586-patient demo cohort.

    python bench/bench_table1_cli.py [--repeats 3] [--out /tmp/bench_table1_cli]

Runs ``python -m analysis.simulate --out OUT/data`` once, then ``python -m analysis.table1
OUT/data/cohort.xlsx --out OUT/reports`` REPEATS times in fresh interpreters (imports included,
as a user runs it); prints each run's wall time, CPU time (user + system: what an idle machine's
wall time comes close to, the run being single-threaded) and peak resident memory (the child's
``ru_maxrss``, what ``/usr/bin/time -v`` reports) and their medians, and the time each writer
takes on the result.
"""
import argparse
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # this checkout's analysis, as the CLI runs (cwd = ROOT) use


def _child(cmd):
    """(wall seconds, peak RSS MiB, CPU seconds user + system) of one child process."""
    pid_start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - pid_start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{proc.stderr.read()[-2000:]}")
    return wall, usage.ru_maxrss / 1024, usage.ru_utime + usage.ru_stime


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default="/tmp/bench_table1_cli")
    args = parser.parse_args(argv)
    out = Path(args.out)
    subprocess.run([sys.executable, "-m", "analysis.simulate", "--out", str(out / "data")], check=True,
                   stdout=subprocess.DEVNULL, cwd=ROOT)
    cmd = [sys.executable, "-m", "analysis.table1", str(out / "data" / "cohort.xlsx"), "--out",
           str(out / "reports")]
    print("command:", " ".join(["python"] + cmd[1:]))
    runs = [_child(cmd) for _ in range(args.repeats)]
    for i, (wall, rss, cpu) in enumerate(runs, 1):
        print(f"run {i}: wall {wall:.2f} s, CPU {cpu:.2f} s, peak RSS {rss:.0f} MiB")
    print(f"median: wall {statistics.median(r[0] for r in runs):.2f} s, "
          f"CPU {statistics.median(r[2] for r in runs):.2f} s, "
          f"peak RSS {statistics.median(r[1] for r in runs):.0f} MiB")

    import warnings

    import analysis
    from analysis import export

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t = time.perf_counter()
        res = analysis.table1(out / "data" / "cohort.xlsx")
        print(f"analysis.table1 in-process (no imports): {time.perf_counter() - t:.2f} s")
    for name, writer in (("table1.xlsx", export.write_xlsx), ("table1.docx", export.write_docx),
                         ("table1.tex", export.write_latex), ("table1.md", export.write_markdown)):
        t = time.perf_counter()
        writer(res, out / "writers" / name)
        print(f"  {name}: {time.perf_counter() - t:.3f} s")
    print(f"load average during the runs: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores "
          f"(resource max RSS of this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
