"""Per-job wall time and memory: every compute rule has a `benchmark:` file named like its log,
and rule `benchmarks` gathers the files into results/benchmarks.csv for the report."""

import re

import pandas as pd
from conftest import ROOT

from lumos.cli import main
from lumos.report.benchmarks import collect

HEADER = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"


def _rules():
    """{rule name: its body} of rules/*.smk."""
    rules = {}
    for smk in sorted((ROOT / "rules").glob("*.smk")):
        blocks = re.split(r"^rule (\w+):\n", smk.read_text(), flags=re.M)
        rules.update(zip(blocks[1::2], blocks[2::2]))
    return rules


def _directive(body, name):
    m = re.search(rf'^    {name}:\n        "([^"]+)"', body, flags=re.M)
    return m and m.group(1)


def test_every_compute_rule_benchmarks_beside_its_log():
    """A rule with a resource request (`rule_resources`: a job of its own on a cluster) writes
    results/benchmarks/<its log's name>.tsv; so does every other rule with a benchmark."""
    rules = _rules()
    compute = {name for name, body in rules.items() if "rule_resources(" in body}
    benchmarked = {name for name, body in rules.items() if "    benchmark:" in body}
    assert len(compute) > 30 and {"pretrain", "finetune", "sample", "fid", "data_part"} <= compute
    assert compute <= benchmarked, sorted(compute - benchmarked)
    assert not {n for n in benchmarked if n.startswith("gather") or n in ("table1", "figure")}
    for name in benchmarked:
        log, bench = _directive(rules[name], "log"), _directive(rules[name], "benchmark")
        assert log and log.startswith("results/logs/") and log.endswith(".log"), (name, log)
        assert bench == "results/benchmarks/" + log[len("results/logs/"):-len(".log")] + ".tsv", (name, bench)


def test_benchmark_table_gathers_the_files(tmp_path):
    folder = tmp_path / "benchmarks"
    (folder / "pretrain").mkdir(parents=True)
    (folder / "sample").mkdir()
    (folder / "pretrain" / "lumos_i2i.tsv").write_text(
        HEADER + "62.5\t0:01:02\t812.4\t2048.0\t790.1\t800.2\t10.5\t3.25\t97.3\t60.1\n"
    )
    # two repeats of a short job; the second ended before Snakemake could sample its memory
    (folder / "sample" / "rcg_coco.part0.tsv").write_text(
        HEADER + "1.25\t0:00:01\t300.0\t900.0\t280.0\t290.0\t1.0\t0.5\t50.0\t0.6\n"
        + "0.1\t0:00:00\tNA\tNA\tNA\tNA\tNA\tNA\tNA\tNA\n"
    )
    (folder / "sample" / "untrained_coco.part0.tsv").write_text("")  # no record written: left out
    df = collect(folder)
    assert list(df.columns[:4]) == ["stage", "job", "s", "h:m:s"] and "max_rss" in df.columns
    assert df[["stage", "job"]].values.tolist() == [["pretrain", "lumos_i2i"], ["sample", "rcg_coco.part0"],
                                                    ["sample", "rcg_coco.part0"]]
    assert df["s"].tolist() == [62.5, 1.25, 0.1] and df["max_rss"].tolist()[:2] == [812.4, 300.0]
    assert pd.isna(df["max_rss"].iloc[2])

    out = tmp_path / "results" / "benchmarks.csv"
    main(["job-benchmarks", "--folder", str(folder), "--csv", str(out)])
    written = pd.read_csv(out)
    assert written["job"].tolist() == df["job"].tolist() and written["max_rss"].iloc[0] == 812.4


def test_benchmark_table_of_no_jobs_has_the_columns(tmp_path):
    """Before any benchmarked job ran (every result made before the rules had `benchmark:`)."""
    df = collect(tmp_path / "absent")
    assert df.empty and list(df.columns[:3]) == ["stage", "job", "s"]
