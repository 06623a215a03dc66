"""Text-to-image evaluation: the GenEval and DPG-Bench analogues run end to end.

A benchmark run makes its fixed prompt set, encodes the prompts with the fine-tune's text
encoder, samples `images_per_prompt` images per prompt (resumable, like every sampling job),
scores them with the Shapes-world detector and writes `scores.json`, `prompts.jsonl` and a grid
of the first prompts' images with the prompts under them. With `ground_truth=True` it scores
ground-truth renders of the same prompts instead: the detector's own accuracy (the ceiling).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from lumos.utils import log

BENCHMARKS = ("geneval", "dpg")


GRID_PROMPTS = [  # the Figure 1a / S4 role: a fixed prompt list shown under the samples
    "a red circle", "a blue square", "a green triangle", "a yellow diamond",
    "a purple circle and an orange square", "a red triangle left of a blue circle",
    "a photo of two green squares", "a pink cross above a cyan diamond",
]


def benchmark_prompts(bench: str, cfg: dict, seed: int, image_size: int) -> list[dict]:
    """The benchmark's prompts; each has a `prompt` text (config block `t2i.eval.<bench>`)."""
    if bench == "geneval":
        from lumos.eval.geneval import make_prompts

        return make_prompts(cfg["prompts_per_family"], seed, image_size)
    if bench == "dpg":
        from lumos.eval.dpg import make_dpg_prompts

        return make_dpg_prompts(cfg["prompts"], seed, image_size)
    raise ValueError(f"unknown benchmark {bench!r}; choose from {BENCHMARKS}")


def ground_truth_images(bench: str, prompts: list[dict], per_prompt: int, image_size: int) -> list[list[np.ndarray]]:
    """`per_prompt` ground-truth renders of every prompt (different layouts / background tones)."""
    if bench == "geneval":
        from lumos.eval.geneval import render_ground_truth

        return [[render_ground_truth(p, seed=k, image_size=image_size) for k in range(per_prompt)] for p in prompts]
    from lumos.eval.dpg import render_dpg_ground_truth

    return [[render_dpg_ground_truth(p, seed=k) for k in range(per_prompt)] for p in prompts]


def score(bench: str, prompts: list[dict], images: list[list[np.ndarray]]) -> dict:
    """GenEval: per-family accuracy + overall (0-1). DPG: per-category + average (0-100)."""
    if bench == "geneval":
        from lumos.eval.geneval import geneval_scores

        return geneval_scores(prompts, images)
    from lumos.eval.dpg import dpg_scores

    return dpg_scores(prompts, images)


def encode_texts(text_encoder, texts: list[str], batch_size: int = 256):
    """Caption tokens (n, L, D) and masks (n, L) for a list of texts."""
    parts = [text_encoder(texts[i : i + batch_size]) for i in range(0, len(texts), batch_size)]
    return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])


def run_benchmark(bench: str, bench_cfg: dict, out_dir: str, *, seed: int, image_size: int, model=None, codec=None,
                  text_encoder=None, sample_cfg: dict | None = None, work_dir: str | None = None,
                  ground_truth: bool = False, device="cpu", grid_prompts: int = 12) -> dict:
    """Generate (or render, `ground_truth`) and score one benchmark; write the results to `out_dir`."""
    from lumos.sample import generate, read_pngs
    from lumos.viz import save_grid

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    prompts = benchmark_prompts(bench, bench_cfg, seed, image_size)
    k = bench_cfg["images_per_prompt"]
    if ground_truth:
        images = ground_truth_images(bench, prompts, k, image_size)
    else:
        tokens, mask = encode_texts(text_encoder, [p["prompt"] for p in prompts])
        c = model.config
        generate(model, codec, tokens.repeat_interleave(k, 0), mask.repeat_interleave(k, 0),
                 (c.in_channels, c.sample_size, c.sample_size), str(out / "images"), work_dir, sample_cfg, seed, device)
        flat = read_pngs(str(out / "images"))
        images = [list(flat[i * k : (i + 1) * k]) for i in range(len(prompts))]
    scores = score(bench, prompts, images)
    scores.update(benchmark=bench, prompts=len(prompts), images_per_prompt=k, source="ground truth" if ground_truth else "model")
    (out / "scores.json").write_text(json.dumps(scores, indent=1))
    with open(out / "prompts.jsonl", "w") as f:
        for p in prompts:
            f.write(json.dumps(p) + "\n")
    shown = prompts[:grid_prompts]
    save_grid(out / "grid.png", [img for imgs in images[: len(shown)] for img in imgs], ncols=k * 4, scale=3,
              labels=[p["prompt"][:160] if j == 0 else "" for p in shown for j in range(k)])
    log.info("%s (%s): %s", bench, scores["source"], {key: v for key, v in scores.items() if isinstance(v, float)})
    return scores
