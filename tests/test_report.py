"""Report assembly: the figures' CSVs carry exactly the metric files' numbers; the tables keep
reported and measured rows apart; the official evaluators' outputs parse."""

import json

import pandas as pd
import pytest

from lumos.report.figures import build_figure


def _metric(root, ft, ckpt, metric, value):
    path = root / ft / ckpt / f"{metric}_coco_short.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    key = "fid" if metric == "fid" else "clip_score"
    path.write_text(json.dumps({key: value, "n_samples": 10, "n": 10}))
    return str(path)


def test_fig2a_plots_clip_score_against_noise(tmp_path):
    runs = {"none@10": "none-t5-mixed-n10", "none@90": "none-t5-mixed-n90",
            "lumos_i2i@10": "lumos_i2i-t5-mixed-n10", "lumos_i2i@90": "lumos_i2i-t5-mixed-n90"}
    values = {"none-t5-mixed-n10": 30.0, "none-t5-mixed-n90": 28.0, "lumos_i2i-t5-mixed-n10": 31.0,
              "lumos_i2i-t5-mixed-n90": 30.5}
    files = [_metric(tmp_path, ft, "final", m, v if m == "clip" else 100 - v) for ft, v in values.items()
             for m in ("clip", "fid")]
    out = build_figure("fig2a", files, runs, str(tmp_path / "f.png"), str(tmp_path / "f.csv"))
    csv = pd.read_csv(tmp_path / "f.csv")
    assert len(csv) == 4 and set(csv.columns) >= {"prior", "noise_percent", "clip"}
    got = {(r.prior, r.noise_percent): r.clip for r in csv.itertuples()}
    assert got == {("none", 10): 30.0, ("none", 90): 28.0, ("lumos_i2i", 10): 31.0, ("lumos_i2i", 90): 30.5}
    assert (tmp_path / "f.png").stat().st_size > 0 and len(out) == 4
    build_figure("figS1", files, runs, str(tmp_path / "s.png"), str(tmp_path / "s.csv"))
    assert set(pd.read_csv(tmp_path / "s.csv")["fid"]) == {70.0, 72.0, 69.0, 69.5}


def test_curve_figures_have_one_line_per_run_and_a_point_per_snapshot(tmp_path):
    runs = {"t5": "lumos_i2i-t5-mixed-n0", "clip": "lumos_i2i-clip-mixed-n0"}
    files = [_metric(tmp_path, ft, f"step-{s:06d}", "fid", s / 100 + i) for i, ft in enumerate(runs.values())
             for s in (500, 1000)]
    build_figure("fig11", files, runs, str(tmp_path / "c.png"), str(tmp_path / "c.csv"))
    csv = pd.read_csv(tmp_path / "c.csv")
    assert sorted(csv["step"].unique()) == [500, 1000]
    assert csv.set_index(["label", "step"])["fid"].to_dict() == {("clip", 500): 6.0, ("clip", 1000): 11.0,
                                                               ("t5", 500): 5.0, ("t5", 1000): 10.0}


def test_curve_lines_keep_the_configured_order(tmp_path):
    """Pool sizes 2000, 6000, 20000 stay in that order in the CSV and the legend (not as text)."""
    runs = {f"pool {n}": f"lumos_i2i_pool{n}-t5-mixed-n0" for n in (2000, 6000, 20000)}
    files = [_metric(tmp_path, ft, f"step-{s:06d}", "fid", 100.0 + s / 100) for ft in runs.values() for s in (1000, 500)]
    build_figure("fig2b", files, runs, str(tmp_path / "b.png"), str(tmp_path / "b.csv"))
    csv = pd.read_csv(tmp_path / "b.csv")
    assert list(csv["label"]) == ["pool 2000"] * 2 + ["pool 6000"] * 2 + ["pool 20000"] * 2
    assert list(csv["step"]) == [500, 1000] * 3


def test_geneval_results_parse_like_its_summary(tmp_path):
    from lumos.eval.official import parse_geneval_results

    rows = [("single_object", True), ("single_object", False), ("counting", True), ("position", False)]
    (tmp_path / "r.jsonl").write_text("".join(json.dumps({"tag": t, "correct": c}) + "\n" for t, c in rows))
    scores = parse_geneval_results(str(tmp_path / "r.jsonl"))
    assert scores == {"single_object": 0.5, "counting": 1.0, "position": 0.0, "overall": 0.5}


def test_dpg_report_parse_and_missing_category(tmp_path):
    """The layout compute_dpg_bench.py writes: per-image lines, then the summary block."""
    from lumos.eval.official import parse_dpg_report

    report = (
        "imgs/countbench3.png, 1.0, 0.5, 0.75, 1.0, 0.8125\n"
        "imgs/partiprompts7.png, 0.0, 0.0, 0.5, 0.25, 0.1875\n"
        "Model: images\n"
        "L1 category scores:\n"
        "\tentity: 86.5\n\tglobal: 87.4\n\tattribute: 87.2\n\trelation: 88.1\n\tother: 79.9\n"
        "L2 category scores:\n"
        "\tattribute - color: 90.0\n\tentity - whole: 12.0\n\tglobal: 87.4\n\tother - count: 70.0\n"
        "Image path: imgs\n"
        "Save results to: report.txt\n"
        "DPG-Bench score: 50.0\n"
    )
    (tmp_path / "ok.txt").write_text(report)
    scores = parse_dpg_report(str(tmp_path / "ok.txt"))
    assert scores == {"entity": 86.5, "global": 87.4, "attribute": 87.2, "relation": 88.1, "other": 79.9,
                      "average": 50.0}
    # A level-1 category absent from the block (no image had one) is an error, named.
    (tmp_path / "bad.txt").write_text(report.replace("\tother: 79.9\n", ""))
    with pytest.raises(ValueError, match=r"\['other'\].*bad.txt"):
        parse_dpg_report(str(tmp_path / "bad.txt"))
    (tmp_path / "empty.txt").write_text("imgs/a.png, 1.0, 1.0\n")
    with pytest.raises(ValueError, match="empty.txt"):
        parse_dpg_report(str(tmp_path / "empty.txt"))


def test_table1_released_row_only_when_evaluated(tmp_path):
    """The 'released weights, evaluated here' row appears only when its FID files are given."""
    import json

    from lumos.report.table1 import build_table1

    files = []
    for run in ("lumos_i2i", "rcg", "untrained", "real", "released_i2i"):
        for split, fid in (("coco", 10.0), ("imagenet", 20.0)):
            path = tmp_path / f"{run}_{split}.json"
            path.write_text(json.dumps({"run": run, "split": split, "fid": fid, "n_samples": 8, "extractor": "x"}))
            files.append(str(path))
    with_release = build_table1(files, "paper")
    assert "Lumos-I2I (released weights, evaluated here)" in set(with_release["method"])
    without = build_table1([f for f in files if "released" not in f], "paper")
    assert not without["method"].str.contains("released").any()
