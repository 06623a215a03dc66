"""Per-job wall time and memory of a workflow run: the table of rule `benchmarks` (rules/report.smk).

Every compute rule has a `benchmark:` file, results/benchmarks/<stage>/<job>.tsv (named like the
job's log under results/logs/), where Snakemake records the job's wall time and the peak memory,
I/O and CPU time of its processes. `collect` gathers them into one table, a row per record, with
the stage (the first folder) and the job (the rest of the name) in front, sorted by both.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

# What Snakemake writes (snakemake/benchmark.py): wall seconds, the same as h:m:s, peak resident /
# virtual / unique / proportional memory (MB), MB read and written, mean CPU load (%), CPU seconds.
# `--benchmark-extended` appends more columns; they are kept.
COLUMNS = ["s", "h:m:s", "max_rss", "max_vms", "max_uss", "max_pss", "io_in", "io_out", "mean_load", "cpu_time"]


def collect(folder) -> pd.DataFrame:
    """One row per benchmark record under `folder` (a file per job, a row per `repeat()`); empty
    files (a job stopped before Snakemake wrote its record) are left out. Columns: stage, job, then
    Snakemake's; "NA" (a job too short to sample) reads as missing."""
    folder = Path(folder)
    frames = []
    for path in sorted(folder.rglob("*.tsv")):
        if path.stat().st_size == 0:
            continue
        rel = path.relative_to(folder).with_suffix("")
        stage, job = (rel.parts[0], Path(*rel.parts[1:]).as_posix()) if len(rel.parts) > 1 else ("", rel.as_posix())
        df = pd.read_csv(path, sep="\t", na_values=["NA"])
        df.insert(0, "job", job)
        df.insert(0, "stage", stage)
        frames.append(df)
    if not frames:
        return pd.DataFrame(columns=["stage", "job", *COLUMNS])
    return pd.concat(frames, ignore_index=True).sort_values(["stage", "job"], kind="stable", ignore_index=True)
