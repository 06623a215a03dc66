"""Model cards: the README.md written with every exported pipeline.

A card has the Hub's YAML front matter (`library_name: diffusers`, `pipeline_tag`, `tags`; no
`license`: the repository declares none) and says what the model is, the preset and data it was
trained on, its training steps and final loss (`train_summary.json`), the numbers measured on it
(the evaluation JSON files the export was given, or where the workflow writes them), its
limitations, and a usage snippet that runs as written from the repository root (the tests run it).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

# Per kind: title, Hub pipeline tag, tags, what it does, training data, where the workflow measures it.
KINDS = {
    "t2i": dict(title="Lumos-T2I", tag="text-to-image", tags=["text-to-image"],
                what="text-to-image: a DiT fine-tuned from a Lumos image-to-image prior on text-image pairs, "
                     "conditioned on text-encoder tokens through cross-attention",
                data="the text-image `pairs` split and its captions",
                where="results/eval/t2i/<fine-tune>/final/ (FID, CLIP score), results/table2.csv and "
                      "results/table3.csv"),
    "i2i": dict(title="Lumos-I2I", tag="image-to-image", tags=["image-to-image", "image-variation"],
                what="image-to-image: a DiT pretrained to generate an image from a reference image's vision "
                     "features (the CLS token of a self-supervised ViT), without any text (Lumos's prior)",
                data="the image pool of the pretrain run (its features split)",
                where="results/eval/fid/<run>_<split>.json and results/table1.csv"),
    "nvs": dict(title="Lumos-NVS", tag="image-to-3d", tags=["novel-view-synthesis", "image-to-image"],
                what="novel view synthesis: from an input view and the relative camera pose of a target view, "
                     "the target view (the input view's latent concatenated, its CLS through cross-attention, "
                     "the camera added to the timestep embedding)",
                data="rendered views of objects (`nvs_train`), several views per object",
                where="results/nvs/<prior>/eval/final/summary.json and results/table4.csv"),
    "i2v": dict(title="Lumos-I2V", tag="image-to-video", tags=["image-to-video"],
                what="image-to-video: from a first frame, a clip that starts with it (a video DiT: the image "
                     "DiT with temporal attention after each spatial block; frame 0 given clean)",
                data="video clips (`video_train`), the first frame's CLS as the condition",
                where="results/i2v/<prior>/eval/<split>.json and results/table5.csv"),
}

# Usage notes per kind: what the snippet's inputs are.
NOTES = {
    "t2i": "",
    "i2i": "`example_input.png` is the first image of an evaluation split; any image works (the encoder resizes it).",
    "nvs": "`example_input.png` is a test object's input view, `example_camera.json` the relative pose of its first "
           "target view (`example_target.png`, the render): R (row-major) and T of the target camera in the input "
           "camera's frame; `pipe.relative_pose(c2w_input, c2w_target)` computes it from two camera-to-world "
           "matrices.",
    "i2v": "`example_input.png` is the first frame of a clip of the data; `frames[0]` is the generated clip.",
}


def limitations(preset: str | None) -> str:
    """The limitations section for a preset."""
    lines = []
    if preset in ("tiny", "smoke"):
        lines.append("- At the `tiny` and `smoke` presets the model is a small stand-in trained for minutes on the "
                     "synthetic Shapes world (flat shapes on white, their 3-D renders and clips): it draws that world "
                     "only, at its small resolution, and its numbers are not comparable with the paper's.")
    else:
        lines.append("- Trained at the paper preset; where the run departs from the paper's protocol is in "
                     "docs/paper-protocol.md.")
    lines += ["- The pipeline samples exactly as the workflow's own sampling commands do for the same condition and "
              "seed; schedulers, step counts or guidance scales other than the evaluated ones above were not measured.",
              "- The folder's `pipeline_lumos_*.py` only imports the class from the `lumos` package, which must be "
              "installed (`pip install .` in the repository); hence `trust_remote_code=True`."]
    return "\n".join(lines)


def flat_numbers(value, prefix: str = "") -> dict[str, float]:
    """The finite numbers of a JSON value, by dotted key (nested dicts flattened, lists skipped)."""
    if isinstance(value, bool):
        return {}
    if isinstance(value, (int, float)):
        return {prefix: value} if math.isfinite(value) else {}
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            out.update(flat_numbers(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {}


def _front_matter(kind: str, preset: str | None) -> str:
    """The YAML metadata block of a card."""
    spec = KINDS[kind]
    tags = ["lumos", "diffusion-transformer", *spec["tags"], *([f"preset-{preset}"] if preset else [])]
    lines = ["---", "library_name: diffusers", f"pipeline_tag: {spec['tag']}", "tags:", *[f"- {t}" for t in tags],
             "---"]
    return "\n".join(lines)


def _training(summary: dict | None, summary_path: str | None, released: bool) -> str:
    """The training section: steps and final loss from the run's summary."""
    if released:
        return "Weights: the authors' released checkpoint, imported (`lumos import-released`); not trained here."
    if not summary:
        return "Training summary: not given to the export (see the run's `train_summary.json`)."
    keys = [k for k in ("steps", "final_loss", "prior", "prior_kind", "objects", "views_per_object", "clips",
                        "frames", "prediction_type") if k in summary]
    rows = "\n".join(f"| {k} | {summary[k]} |" for k in keys)
    return f"From `{summary_path}`:\n\n| | |\n|---|---|\n{rows}"


def _measured(metrics: dict[str, dict], where: str) -> str:
    """The measured section: every number of the given evaluation files, or where they are."""
    if not metrics:
        return f"No evaluation was given to the export; the workflow writes this model's numbers to {where}."
    parts = []
    for path, values in metrics.items():
        numbers = flat_numbers(values)
        rows = "\n".join(f"| {k} | {v:.4g} |" if isinstance(v, float) else f"| {k} | {v} |"
                         for k, v in numbers.items())
        parts.append(f"`{path}`:\n\n| metric | value |\n|---|---|\n{rows}")
    return "\n\n".join(parts)


def model_card(kind: str, folder: str, usage: list[str], *, name: str, preset: str | None, model: str,
               sampling: dict, summary: dict | None = None, summary_path: str | None = None,
               metrics: dict[str, dict] | None = None, encoder: str | None = None, released: bool = False) -> str:
    """The README.md text of an exported pipeline (`usage`: the snippet's lines)."""
    spec = KINDS[kind]
    title = f"{spec['title']}: {name}" + (f" ({preset} preset)" if preset else "")
    data = spec["data"] + ("." if not preset else
                           f", at the `{preset}` preset" + (" (the Shapes world)." if preset in ("tiny", "smoke")
                                                            else " (config/paper.yaml)."))
    sample = ", ".join(f"{k} {v}" for k, v in sampling.items())
    return "\n".join([
        _front_matter(kind, preset), "", f"# {title}", "",
        f"A reproduction of Lumos (\"Learning Visual Generative Priors without Text\") built by the `lumos` "
        f"workflow: {spec['what']}.", "",
        f"- Transformer: `{model}`" + (f"; condition encoder: `{encoder}`" if encoder else ""),
        f"- Preset: `{preset or 'unknown'}`", f"- Data: {data}", f"- Sampling evaluated: {sample}",
        "- License: none declared (the repository has no license file).", "",
        "## Training", "", _training(summary, summary_path, released), "",
        "## Measured", "", _measured(metrics or {}, spec["where"]), "",
        "## Limitations", "", limitations(preset), "",
        "## Usage", "", f"From the repository root, with `lumos` installed (`{folder}`):", "",
        "```python", *usage, "```", "", *([NOTES[kind], ""] if NOTES[kind] else [])])


def write_model_card(folder: str, kind: str, usage: list[str], *, summary_path: str | None = None,
                     metric_paths: list[str] | None = None, **info) -> Path:
    """Write `folder/README.md` (see `model_card`), reading the training summary and the
    evaluation JSON files; returns its path."""
    summary = json.loads(Path(summary_path).read_text()) if summary_path else None
    metrics = {str(p): json.loads(Path(p).read_text()) for p in metric_paths or []}
    text = model_card(kind, str(folder), usage, summary=summary, summary_path=summary_path, metrics=metrics, **info)
    path = Path(folder) / "README.md"
    path.write_text(text)
    return path
