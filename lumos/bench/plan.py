"""How long Snakemake takes to plan a DAG: `snakemake -n <targets> --configfile <preset>` timed in
CPU-seconds (user + system of the Snakemake process, so other load on the machine mostly cancels
out) and wall seconds, a few repeats. The paper preset's `all` (~5,000 jobs) is the case that
matters: every `snakemake` call on a cluster plans it before anything runs."""

from __future__ import annotations

import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]  # the checkout: Snakefile, config/


def plan_once(targets: list[str], configfile: Path, snakefile: Path) -> dict:
    """One dry run in an empty folder: CPU-seconds, wall seconds and the number of jobs planned."""
    cmd = [sys.executable, "-m", "snakemake", "-n", *targets, "--snakefile", str(snakefile),
           "--configfile", str(configfile)]
    with tempfile.TemporaryDirectory(prefix="lumos-plan-") as work:
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        proc = subprocess.run([*cmd, "--directory", work], capture_output=True, text=True, cwd=work)
        wall = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"lumos bench --plan: snakemake failed:\n{proc.stderr[-3000:]}")
    total = re.search(r"^total\s+(\d+)$", proc.stdout, re.M)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"cpu_s": cpu, "wall_s": wall, "jobs": int(total.group(1)) if total else 0}


def run_plan_benchmark(args) -> list[dict]:
    """Print the CPU and wall seconds of `args.repeats` dry runs of `args.targets` (default `all`)
    under `args.configfile` (default the paper preset), and their minimum."""
    snakefile = ROOT / "Snakefile"
    if not snakefile.exists():
        raise SystemExit(f"lumos bench --plan: error: no Snakefile at {snakefile} (run it from a checkout)")
    configfile = Path(args.configfile or ROOT / "config" / "paper.yaml").resolve()
    targets = args.targets.split(",") if args.targets else ["all"]
    runs = []
    for i in range(args.repeats):
        r = plan_once(targets, configfile, snakefile)
        runs.append(r)
        print(f"plan {' '.join(targets)} ({configfile.name}) run {i + 1}: {r['jobs']} jobs, "
              f"{r['cpu_s']:.2f} CPU-s, {r['wall_s']:.2f} s wall", flush=True)
    best = min(runs, key=lambda r: r["cpu_s"])
    print(f"plan: best of {len(runs)}: {best['cpu_s']:.2f} CPU-s, {best['wall_s']:.2f} s wall for {best['jobs']} jobs")
    return runs
