"""The official GenEval and DPG-Bench evaluators' side of the workflow, without their envs or
models: their output files (written here in the layouts their scripts write) parse, and parse
only when every image of the prompt files was scored; DPG-Bench's --resolution comes from the
images written; the Mask2Former config is found where the PyPI mmdet wheel keeps it."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from lumos.eval.official import (
    geneval_prompts,
    parse_dpg_report,
    parse_geneval_results,
    write_dpg_images,
    write_geneval_images,
    written_resolution,
)

ROOT = Path(__file__).resolve().parent.parent
FIND_CONFIG = ROOT / "lumos" / "eval" / "mmdet_config.py"
DETECTOR = "mask2former_swin-s-p4-w7-224_lsj_8x2_50e_coco"

# ------------------------------------------------------------------------------------ GenEval

PROMPTS = [{"tag": "single_object", "include": [{"class": "cow", "count": 1}], "prompt": "a photo of a cow"},
           {"tag": "counting", "include": [{"class": "cup", "count": 2}], "prompt": "a photo of two cups"},
           {"tag": "position", "include": [{"class": "dog", "count": 1}], "prompt": "a photo of a dog left of a cat"}]


def _geneval_repo(root) -> str:
    """A GenEval checkout holding only its prompt file (prompts/evaluation_metadata.jsonl)."""
    (root / "prompts").mkdir(parents=True)
    (root / "prompts" / "evaluation_metadata.jsonl").write_text("".join(json.dumps(p) + "\n" for p in PROMPTS))
    return str(root)


def _geneval_results(path, correct: dict, imagedir="images"):
    """evaluate_images.py's output: one JSON line per image, written as it writes them (pandas,
    records, lines), for the images (prompt index, sample) -> correct given."""
    rows = [{"filename": f"{imagedir}/{i:05d}/samples/{k:04d}.png", "tag": PROMPTS[i]["tag"],
             "prompt": PROMPTS[i]["prompt"], "correct": ok, "reason": "", "metadata": json.dumps(PROMPTS[i]),
             "details": "{}"} for (i, k), ok in correct.items()]
    with open(path, "w") as fp:
        pd.DataFrame(rows).to_json(fp, orient="records", lines=True)
    return str(path)


def _all_images(per_prompt=4):
    # cow: 3 of 4 right; cups: 1 of 4; dog/cat: none
    return {(i, k): k < (3, 1, 0)[i] for i in range(len(PROMPTS)) for k in range(per_prompt)}


def test_geneval_results_parse_like_its_summary(tmp_path):
    """Accuracy per tag, overall = mean over tags (GenEval's summary_scores.py)."""
    scores = parse_geneval_results(_geneval_results(tmp_path / "r.jsonl", _all_images()), PROMPTS, 4)
    assert scores == {"single_object": 0.75, "counting": 0.25, "position": 0.0, "overall": 1 / 3, "images": 12}


def test_geneval_results_missing_images_fail_naming_the_count(tmp_path):
    images = _all_images()
    del images[(1, 2)], images[(2, 0)]
    path = _geneval_results(tmp_path / "r.jsonl", images)
    with pytest.raises(ValueError, match=r"scores 10 of 12 images .*: 2 missing \(e\.g\. \(1, 2\), \(2, 0\)\)"):
        parse_geneval_results(path, PROMPTS, 4)
    # a whole prompt folder absent (GenEval scores the folders it finds)
    path = _geneval_results(tmp_path / "r2.jsonl", {ik: ok for ik, ok in _all_images().items() if ik[0] != 2})
    with pytest.raises(ValueError, match="4 missing"):
        parse_geneval_results(path, PROMPTS, 4)


def test_geneval_results_for_other_prompts_fail(tmp_path):
    path = _geneval_results(tmp_path / "r.jsonl", _all_images())
    with pytest.raises(ValueError, match="not have"):  # more prompts scored than the prompt file has
        parse_geneval_results(path, PROMPTS[:2], 4)
    other = [PROMPTS[1], PROMPTS[0], PROMPTS[2]]
    with pytest.raises(ValueError, match="does not match the prompt file"):
        parse_geneval_results(path, other, 4)


def test_geneval_layout_and_resolution(tmp_path):
    """Our images in GenEval's layout (<index>/metadata.jsonl + samples/<k>.png), resumable, and
    the sample size read back from the files."""
    calls = []

    def generate(prompts, seed):
        calls.append(seed)
        return np.full((len(prompts), 24, 24, 3), seed, np.uint8)

    repo, out = _geneval_repo(tmp_path / "geneval"), tmp_path / "images"
    assert write_geneval_images(generate, repo, str(out), per_prompt=4) == 3
    assert json.loads((out / "00001" / "metadata.jsonl").read_text()) == PROMPTS[1]
    assert sorted(p.name for p in (out / "00002" / "samples").iterdir()) == [f"{k:04d}.png" for k in range(4)]
    write_geneval_images(generate, repo, str(out), per_prompt=4)
    assert calls == [0, 1, 2]  # done prompts are skipped
    assert written_resolution("geneval", str(out)) == 24
    assert geneval_prompts(repo) == PROMPTS


# ---------------------------------------------------------------------------------- DPG-Bench

SUMMARY = ("Model: images\n"
           "L1 category scores:\n"
           "\tentity: 86.5\n\tglobal: 87.4\n\tattribute: 87.2\n\trelation: 88.1\n\tother: 79.9\n"
           "L2 category scores:\n"
           "\tattribute - color: 90.0\n\tentity - whole: 12.0\n\tglobal: 87.4\n\tother - count: 70.0\n"
           "Image path: images\n"
           "Save results to: report.txt\n"
           "DPG-Bench score: 50.0\n")


def _dpg_report(path, ids, summary=SUMMARY):
    """compute_dpg_bench.py's results file: a line per scored grid (path, its four tiles' scores,
    their mean), then the summary block."""
    lines = "".join(f"images/{pid}.png, 1.0, 0.5, 0.75, 1.0, 0.8125\n" for pid in ids)
    Path(path).write_text(lines + summary)
    return str(path)


def test_dpg_report_parse(tmp_path):
    ids = ["0", "17", "COCOval2014000000010363"]
    scores = parse_dpg_report(_dpg_report(tmp_path / "report.txt", ids), ids)
    assert scores == {"entity": 86.5, "global": 87.4, "attribute": 87.2, "relation": 88.1, "other": 79.9,
                      "average": 50.0, "images": 3}


def test_dpg_report_skipped_images_fail_naming_the_count(tmp_path):
    """compute_dpg_bench.py skips a grid whose scoring raises and averages the rest: the report
    then lacks that grid's line."""
    ids = [str(i) for i in range(10)]
    path = _dpg_report(tmp_path / "report.txt", ids[:7])
    with pytest.raises(ValueError, match=r"scores 7 of 10 prompts: 3 missing \(e\.g\. 7, 8, 9\)"):
        parse_dpg_report(path, ids)


def test_dpg_report_missing_category_or_block(tmp_path):
    ids = ["a", "b"]
    bad = _dpg_report(tmp_path / "bad.txt", ids, SUMMARY.replace("\tother: 79.9\n", ""))
    with pytest.raises(ValueError, match=r"\['other'\].*bad.txt"):
        parse_dpg_report(bad, ids)
    empty = _dpg_report(tmp_path / "empty.txt", ids, summary="")
    with pytest.raises(ValueError, match="empty.txt"):
        parse_dpg_report(empty, ids)


def test_dpg_grids_and_resolution(tmp_path):
    """Four samples per prompt tiled 2x2 into <prompt id>.png; --resolution is one tile's side,
    read from the written grids; grids of mixed or non-square sizes are refused."""
    (tmp_path / "ELLA" / "dpg_bench" / "prompts").mkdir(parents=True)
    for pid in ("0", "1"):
        (tmp_path / "ELLA" / "dpg_bench" / "prompts" / f"{pid}.txt").write_text(f"prompt {pid}\n")

    def generate(prompts, seed):
        return np.stack([np.full((40, 40, 3), 10 * k + seed, np.uint8) for k in range(len(prompts))])

    out = tmp_path / "images"
    assert write_dpg_images(generate, str(tmp_path / "ELLA"), str(out)) == 2
    grid = np.asarray(Image.open(out / "1.png"))
    assert grid.shape == (80, 80, 3)
    assert [grid[0, 0, 0], grid[0, 40, 0], grid[40, 0, 0], grid[40, 40, 0]] == [1, 11, 21, 31]
    assert written_resolution("dpg", str(out)) == 40
    Image.new("RGB", (80, 40)).save(out / "2.png")
    with pytest.raises(ValueError, match="different sizes"):
        written_resolution("dpg", str(out))
    (out / "2.png").unlink()
    for name in ("0.png", "1.png"):
        Image.new("RGB", (81, 81)).save(out / name)
    with pytest.raises(ValueError, match="2x2 grid"):
        written_resolution("dpg", str(out))


# --------------------------------------------------------------- GenEval's detector config


def _find_config(tmp_path, *args):
    """Run the config finder as the rule does: by path, in a fresh interpreter."""
    env = {"PYTHONPATH": str(tmp_path / "site"), "PATH": "/usr/bin:/bin"}
    return subprocess.run([sys.executable, str(FIND_CONFIG), *args], capture_output=True, text=True, env=env)


def _fake_mmdet(tmp_path, configs: str) -> Path:
    """An `mmdet` package whose Mask2Former config sits under `configs` (relative to site/)."""
    site = tmp_path / "site"
    (site / "mmdet").mkdir(parents=True)
    (site / "mmdet" / "__init__.py").write_text("raise ImportError('importing mmdet loads CUDA ops')\n")
    config = site / configs / "mask2former" / f"{DETECTOR}.py"
    config.parent.mkdir(parents=True)
    config.write_text("_base_ = []\n")
    return config


@pytest.mark.parametrize("configs", ["mmdet/.mim/configs", "configs"])  # PyPI wheel; source checkout
def test_geneval_detector_config_found(tmp_path, configs):
    config = _fake_mmdet(tmp_path, configs)
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / f"{DETECTOR}.pth").write_bytes(b"")
    proc = _find_config(tmp_path, "--weights", str(tmp_path / "models"))
    assert proc.returncode == 0, proc.stderr
    assert Path(proc.stdout.strip()) == config


def test_geneval_detector_config_or_weights_missing(tmp_path):
    proc = _find_config(tmp_path, "--weights", str(tmp_path / "models"))
    assert proc.returncode == 1 and "weights" in proc.stderr and "geneval_detector" in proc.stderr
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / f"{DETECTOR}.pth").write_bytes(b"")
    proc = _find_config(tmp_path, "--weights", str(tmp_path / "models"))
    assert proc.returncode == 1 and "mmdet is not installed" in proc.stderr
    _fake_mmdet(tmp_path, "elsewhere")
    proc = _find_config(tmp_path, "--weights", str(tmp_path / "models"))
    assert proc.returncode == 1 and f"no mask2former/{DETECTOR}.py" in proc.stderr


# ------------------------------------------------------------------------- the two commands


def test_official_commands_write_resolution_and_scores(tmp_path, monkeypatch, capsys):
    """`lumos official-images` writes DPG-Bench's grids and the tile size measured on them;
    `lumos official-scores` checks the report against the repository's prompt files."""
    import lumos.pipelines
    from lumos.cli import main

    ella = tmp_path / "ELLA"
    (ella / "dpg_bench" / "prompts").mkdir(parents=True)
    for pid in ("0", "1", "2"):
        (ella / "dpg_bench" / "prompts" / f"{pid}.txt").write_text(f"prompt {pid}\n")
    fake = lambda pipeline, sample_cfg, device: lambda prompts, seed: np.zeros((len(prompts), 32, 32, 3), np.uint8)  # noqa: E731
    monkeypatch.setattr(lumos.pipelines, "pipeline_sampler", fake)
    sample = {"sampler": "ddpm", "steps": 1, "guidance_scale": 1.0, "batch_size": 4, "jobs": 1}
    cfg = json.dumps({"device": "cpu", "sample": sample,
                      "t2i.eval.geneval.images_per_prompt": 4, "t2i.eval.official.dpg_repo": str(ella)})
    out = tmp_path / "dpg_official"
    main(["official-images", "--cfg", cfg, "--bench", "dpg", "--pipeline", "unused", "--out", str(out / "images"),
          "--out-resolution", str(out / "resolution.txt")])
    assert sorted(p.name for p in (out / "images").iterdir()) == ["0.png", "1.png", "2.png"]
    assert (out / "resolution.txt").read_text() == "32\n"

    scores = ["official-scores", "--bench", "dpg", "--repo", str(ella), "--out", str(out / "scores.json")]
    main([*scores, "--results", _dpg_report(out / "report.txt", ["0", "1", "2"])])
    assert json.loads((out / "scores.json").read_text())["average"] == 50.0
    with pytest.raises(SystemExit):
        main([*scores, "--results", _dpg_report(out / "partial.txt", ["0", "2"])])
    assert "scores 2 of 3 prompts: 1 missing (e.g. 1)" in capsys.readouterr().err


def test_paper_dry_run_passes_config_resolution_and_repo(tmp_path):
    """The paper DAG's official jobs: GenEval gets the located Mask2Former config, DPG-Bench the
    measured tile size and dist_eval.sh's launch flags, the parser the repository's prompts."""
    snakemake = [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"), "--directory", str(tmp_path)]
    proc = subprocess.run([*snakemake, "results/table3.csv", "--configfile", str(ROOT / "config" / "paper.yaml"),
                           "-n", "-p"], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out, d = proc.stdout, "results/eval/t2i/lumos_i2i-t5-mixed-n0/dpg_official"
    assert f"{FIND_CONFIG} --weights /path/to/geneval/models)" in out
    assert '--model-config "$config" --model-path /path/to/geneval/models' in out
    assert f"--out-resolution {d}/resolution.txt" in out
    assert f"--resolution $(cat {d}/resolution.txt) --pic-num 4" in out
    assert "accelerate launch --num_machines 1 --num_processes 1 --mixed_precision fp16" in out
    assert "official-scores --bench geneval --repo /path/to/geneval --images-per-prompt 4" in out
    assert "official-scores --bench dpg --repo /path/to/ELLA" in out
