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


def test_geneval_results_parse_like_its_summary(tmp_path):
    from lumos.eval.official import parse_geneval_results

    rows = [("single_object", True), ("single_object", False), ("counting", True), ("position", False)]
    (tmp_path / "r.jsonl").write_text("".join(json.dumps({"tag": t, "correct": c}) + "\n" for t, c in rows))
    scores = parse_geneval_results(str(tmp_path / "r.jsonl"))
    assert scores == {"single_object": 0.5, "counting": 1.0, "position": 0.0, "overall": 0.5}


def test_dpg_report_parse_and_missing_category(tmp_path):
    from lumos.eval.official import parse_dpg_report

    (tmp_path / "ok.txt").write_text("L1 category scores: global: 0.874, entity: 0.865, attribute: 0.872,"
                                     " relation: 0.881, other: 0.799\nFinal score: 0.799\n")
    scores = parse_dpg_report(str(tmp_path / "ok.txt"))
    assert scores["global"] == pytest.approx(87.4) and scores["average"] == pytest.approx(79.9)
    (tmp_path / "bad.txt").write_text("global: 0.8\n")
    with pytest.raises(ValueError, match="bad.txt"):
        parse_dpg_report(str(tmp_path / "bad.txt"))
