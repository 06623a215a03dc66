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

# The paper's own T2I prompts, (figure, prompt), as its text gives them (lumos-paper.txt):
# Figure 1a's seven from supplementary J (top to bottom, left to right), and Figures S4 and S5's
# printed beside their images (in the order the text lists them). Figure 6's prompts are not in
# the text (only the images are), so it has none here.
PAPER_PROMPTS = [
    ("1a", "golden sunset shines on the top of snow-capped mountains, with small villages at its foot and "
           "surrounding buildings."),
    ("1a", "A rustic bedroom showcasing a round bed, earth-toned decor, and a cluttered, yet charming ambiance."),
    ("1a", "Documentary-style photography of a bustling marketplace in Marrakech, with spices and textiles."),
    ("1a", "group characters from fantasy myth in the style of ori and the blind forest, riot games, ghibli, "
           "ori environment."),
    ("1a", "Post-Apocalyptic Wanderer, character design, style by kim jung gi, zabrocki, karlkka, jayison devadas, 8k."),
    ("1a", "The picture shows a cute little tiger, wearing a blue hoodie and hat, sitting on a small cardboard boat "
           "on calm water."),
    ("1a", "A dragon made of molten chocolate, with scales that glisten like gold leaf and eyes of crystalline sugar."),
    ("S4", "A peaceful mountain lake reflecting the surrounding pine trees and snowy peaks, photorealistic, tranquil"),
    ("S4", "Two female rabbit adventurers dressed in a fancy velvet coats next to a Christmas tree, Christmas theme, "
           "on an antique opulent background, jean - baptiste monge, smooth, anthropomorphic photorealistic, "
           "photography, lifelike, high resolution, smooth"),
    ("S4", "A peaceful forest in autumn, with golden leaves falling and a stream running through it, illuminated by "
           "soft sunlight."),
    ("S4", "A bear with fur made of chocolate shavings, standing in a clearing filled with marshmallow mushrooms"),
    ("S4", "A close-up of a sunlit butterfly resting on a flower in a garden"),
    ("S4", "An owl constructed from layers of caramel popcorn and hazelnut chocolate, perched on a pretzel branch"),
    ("S5", "A dramatic mountain range during a thunderstorm, with dark clouds, lightning strikes, and rugged terrain"),
    ("S5", "a close up portrait of a swan flapping its wings in a lake, sunlight pouring in, strong sunlight, strong "
           "shadow, kodak portra 800 film, cinematic, film grain"),
    ("S5", "A majestic bald eagle soaring over a snowy mountain range"),
    ("S5", "A cyborg superhero with a robotic arm and high-tech gadgets, standing atop a skyscraper"),
    ("S5", "A hippopotamus with a body of jelly-like translucent gelatin, lounging in a pool of liquid sherbet"),
    ("S5", "A baby rabbit wearing a tiny knitted hat, ultra-detailed, photorealistic"),
    ("S5", "A close-up photograph of a lion with its mane blowing in the wind against the savanna backdrop"),
    ("S5", "A close-up of a vibrant, fully bloomed red rose with dew drops on its petals"),
    ("S5", "A group of astronauts standing on the surface of Mars, with Earth visible in the distant sky."),
    ("S5", "Two baby ducks swimming in a pond at sunset, highly detailed, hyper-realistic"),
]


def grid_prompts(name: str) -> list[tuple[str, str]]:
    """(label, prompt) pairs of a sample grid: `shapes`, the Shapes-world prompts (label = the
    prompt), or `paper`, the paper's own (label = "Fig. <figure>: <prompt>")."""
    if name == "shapes":
        return [(p, p) for p in GRID_PROMPTS]
    if name == "paper":
        return [(f"Fig. {fig}: {p}", p) for fig, p in PAPER_PROMPTS]
    raise ValueError(f"unknown prompt set {name!r}: choose shapes or paper")


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
