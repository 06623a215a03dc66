"""Which runs and fine-tunes each figure compares, by name: the T2I-from-priors figures (2a, 2b,
8, 11, 11b, S1), Figure 12's dropout and guidance points and the ablation figures' lines (9, 10,
S2, S3; 2c is Figure 10's T2I panel), the levers' class curves and Table 1's rows beyond the paper.
The rules turn these names into the metric files they read."""

from __future__ import annotations

from lumos.workflow.names import format_finetune, format_run, parse_finetune

# what an ablation figure's line label names, besides its run
# (figG1, beyond the paper: how the encoder guides the DiT; its lines are labelled by run alone)
ABLATION_VARIES = {"fig9": "tokens", "fig10": "encoder", "figS2": "tokens", "figS3": "encoder", "figG1": None}


def main_text(config: dict) -> str:
    """The text encoder of the main fine-tune (`t2i.main`), the one the figures' fine-tunes use."""
    return parse_finetune(config["t2i"]["main"])["text"]


def fig_runs(config: dict, fig: str) -> dict:
    """{line label: fine-tune name} of a T2I figure (Figure S1 plots Figure 2a's fine-tunes)."""
    fig = "fig2a" if fig == "figS1" else fig
    text, f = main_text(config), config["t2i"]["figures"][fig]
    if fig == "fig2a":
        return {f"{p}@{n}": format_finetune(p, text, "mixed", n) for p in f["priors"] for n in f["noise_percent"]}
    if fig == "fig2b":
        return {f"pool {n}": format_finetune(format_run("lumos_i2i", pool=n), text) for n in f["pool_sizes"]}
    if fig == "fig8":
        return {p: format_finetune(p, text) for p in f["priors"]}
    if fig == "fig11":
        return {t: format_finetune("lumos_i2i", t) for t in f["text_encoders"]}
    if fig == "fig11b":
        return {t: format_finetune(f["prior"], t) for t in f["text_encoders"]}
    raise ValueError(fig)


def fig12_runs(config: dict) -> dict:
    """Figure 12's points: {("dropout", P): run, ("guidance", G): run}. The dropout equal to
    pretrain.model.cond_dropout is the run itself (no second training)."""
    f = config["pretrain"]["fig12"]
    default = round(config["pretrain"]["model"]["cond_dropout"] * 100)
    runs = {("dropout", p): f["run"] if p == default else format_run(f["run"], drop=p) for p in f["dropout_percent"]}
    runs.update({("guidance", g): format_run(f["run"], cfg=g) for g in f["guidance_scales"]})
    return runs


def ablation_figures(config: dict) -> list[str]:
    """The ablation figures configured (`pretrain.figures`), and Figure 2c with Figure 10."""
    figures = config["pretrain"]["figures"]
    return [*figures, *(["fig2c"] if "fig10" in figures else [])]


def ablation_lines(config: dict, fig: str) -> dict:
    """{line label: pretrain run} of an ablation figure (Figure 2c: Figure 10's); each label names
    what the figure varies (the encoder or the token set) and the run."""
    source = "fig10" if fig == "fig2c" else fig
    runs = config["pretrain"]["runs"]
    varies = ABLATION_VARIES[source]  # None: the run alone (figG1)
    lines = config["pretrain"]["figures"][source]["runs"]
    return {f"{runs[r].get(varies, 'cls')} ({r})" if varies else r: r for r in lines}


def ablation_finetune(config: dict, run: str) -> str:
    """The T2I fine-tune of an ablation line's prior: <run>-<main text encoder>-mixed-n0."""
    return format_finetune(run, main_text(config))


def class_curve_runs(config: dict) -> list[str]:
    """The class-to-image runs of the levers' curves (`pretrain.class_curves`, beyond the paper); a
    ConfigError names any that is not a pretrain run with injection class."""
    from lumos.config import ConfigError

    runs = config["pretrain"]["runs"]
    for run in config["pretrain"]["class_curves"]:
        if runs.get(run, {}).get("injection") != "class":
            raise ConfigError(f"pretrain.class_curves names {run!r}: not a pretrain run with injection class")
    return list(config["pretrain"]["class_curves"])


def table1_beyond_runs(config: dict) -> list[str]:
    """Table 1's rows beyond the paper: the representation-guided priors (`pretrain.table1_beyond`);
    a ConfigError names any that is not a pretrain run."""
    from lumos.config import ConfigError

    missing = sorted(set(config["pretrain"]["table1_beyond"]) - set(config["pretrain"]["runs"]))
    if missing:
        raise ConfigError(f"pretrain.table1_beyond names {missing}: not pretrain runs (define them under "
                          "pretrain.runs, or drop them from the list)")
    return list(config["pretrain"]["table1_beyond"])
