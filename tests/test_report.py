"""Report assembly: the figures' CSVs carry exactly the metric files' numbers; the tables keep
reported and measured rows apart. (The official evaluators' outputs: tests/test_official.py.)"""

import json

import pandas as pd

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


def test_table2_table3_released_t2i_row_only_when_evaluated(tmp_path):
    """Tables 2 and 3 gain 'Lumos-T2I (released weights, evaluated here)' only when its files are
    given; the note then states how it was sampled (config released.t2i_sample)."""
    from lumos.report import table2, table3

    def write(name, obj):
        path = tmp_path / name
        path.write_text(json.dumps(obj))
        return str(path)

    fid = {name: write(f"{name}.json", {"fid": value, "n_samples": 30000, "extractor": "inception-v3"})
           for name, value in (("short", 12.0), ("long", 7.0), ("untrained", 200.0), ("real", 2.0), ("released", 11.0))}
    summary = write("summary.json", {"pairs": 30000000, "steps": 65000})
    sampling = {"sampler": "dpm++", "steps": 20, "guidance_scale": 4.5, "image_size": 1024, "batch_size": 8}
    label = "Lumos-T2I (released weights, evaluated here)"

    without = table2.build_table2(fid["short"], fid["long"], fid["untrained"], fid["real"], summary, "paper")
    assert label not in set(without["method"]) and "released" not in table2.to_markdown(without, sampling)
    df = table2.build_table2(fid["short"], fid["long"], fid["untrained"], fid["real"], summary, "paper", fid["released"])
    row = df.set_index("method").loc[label]
    assert (row["fid"], row["captions"], row["source"]) == (11.0, "short (raw)", "measured")
    note = table2.to_markdown(df, sampling)
    assert "DPM-Solver++ 20 steps, guidance 4.5" in note and "1024 x 1024 px" in note and "T5 v1.1 XXL" in note

    geneval = write("geneval.json", {"overall": 0.5, "single_object": 0.9})
    dpg = write("dpg.json", {"average": 80.0})
    rows = {"Lumos-T2I": (geneval, dpg, None), label: (geneval, dpg, None)}
    df3 = table3.build_table3(rows, "paper")
    assert df3.set_index("method").loc[label, "geneval_overall"] == 0.5
    assert "guidance 4.5" in table3.to_markdown(df3, "official GenEval", "official DPG-Bench", sampling)
    only_ours = table3.build_table3({"Lumos-T2I": rows["Lumos-T2I"]}, "paper")
    assert "released" not in table3.to_markdown(only_ours, "official GenEval", "official DPG-Bench", sampling)


def test_fid_tables_call_rows_comparable_by_the_feature_network_not_the_preset(tmp_path):
    """Table 1's note calls measured rows comparable with the paper's only when FID used
    Inception-v3; the paper preset with another network (a user's fid_net) is not comparable,
    and the extractor column names that network."""
    import json

    from lumos.eval.fid import INCEPTION_NAME, fid_net_name
    from lumos.report.table1 import build_table1, to_markdown

    def table(extractor):
        files = []
        for run in ("lumos_i2i", "rcg", "untrained", "real"):
            for split in ("coco", "imagenet"):
                path = tmp_path / f"{run}_{split}.json"
                path.write_text(json.dumps({"run": run, "split": split, "fid": 1.0, "n_samples": 8,
                                            "extractor": extractor}))
                files.append(str(path))
        return build_table1(files, "paper")

    user = fid_net_name({"pretrained": "/nets/my_net", "train": None})
    assert user == "user network (/nets/my_net)"
    assert fid_net_name({"pretrained": "results/components/fid_net", "train": {"steps": 1}}) == \
        "shapes-classifier (trained in the DAG)"
    df = table(user)
    assert set(df.loc[df["source"] == "measured", "feature_extractor"]) == {user}
    assert "not comparable with the `reported (paper)` rows" in to_markdown(df)
    assert "they compare with the `reported (paper)` rows" in to_markdown(table(INCEPTION_NAME))
