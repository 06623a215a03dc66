# The ablation figures of section 4.3 / F (Figures 9, 10, S2, S3; 2c is 10's T2I panel): I2I FID
# against pretraining steps (EMA snapshots sampled as `<run>_step<N>`) and the FID of each prior's
# T2I fine-tune <run>-<main text encoder>-mixed-n0 against fine-tuning steps. Which runs each
# figure compares, and their snapshots: lumos/workflow/figures.py and snapshots.py.
from lumos.workflow.figures import ablation_figures, ablation_finetune, ablation_lines  # noqa: E402
from lumos.workflow.names import format_run, snapshot_step  # noqa: E402
from lumos.workflow.snapshots import pretrain_snapshots  # noqa: E402

ABLATIONS = config["pretrain"]["figures"]
for _fig, _spec in ABLATIONS.items():
    for _run in _spec["runs"]:
        if _run not in config["pretrain"]["runs"]:
            raise WorkflowError(
                f"config key 'pretrain.figures.{_fig}.runs': {_run!r} is not a pretrain run "
                f"({sorted(config['pretrain']['runs'])})"
            )
if ABLATIONS and not config["pretrain"]["snapshot_every"]:
    raise WorkflowError(
        "config key 'pretrain.snapshot_every' is not set: the ablation figures "
        f"({', '.join(sorted(ABLATIONS))}) plot FID against pretraining steps"
    )

# {figure: {"i2i": [...], "t2i": [...]}}: the --i2i / --t2i arguments of `lumos ablation-figure`,
# LABEL=STEP:FILE per point. I2I: the FID of each pretraining snapshot on the first eval split;
# T2I: the FID of each fine-tuning snapshot (Figure 2c: the T2I panel only).
ABLATION_POINTS = {
    fig: {
        "i2i": (
            []
            if fig == "fig2c"
            else [
                f"{label}={step}:results/eval/fid/{format_run(run, step=step)}_{EVAL_SPLITS[0]}.json"
                for label, run in ablation_lines(config, fig).items()
                for step in pretrain_snapshots(config, run)
            ]
        ),
        "t2i": [
            f"{label}={snapshot_step(s)}:results/eval/t2i/{ablation_finetune(config, run)}/{s}/fid_coco_short.json"
            for label, run in ablation_lines(config, fig).items()
            for s in SNAPSHOTS
        ],
    }
    for fig in ablation_figures(config)
}


localrules:
    ablation_figure,


rule ablation_figure:
    input:
        lambda wc: [p.split(":", 1)[1] for p in (*ABLATION_POINTS[wc.afig]["i2i"], *ABLATION_POINTS[wc.afig]["t2i"])],
    output:
        png=report(
            "results/{afig}.png",
            caption="../docs/report/ablation.rst",
            category="Ablations (Section 4.3, F)",
            subcategory="{afig}",
        ),
        csv=report(
            "results/{afig}.csv",
            caption="../docs/report/ablation.rst",
            category="Ablations (Section 4.3, F)",
            subcategory="{afig}",
        ),
    wildcard_constraints:
        afig="|".join(ABLATION_POINTS) or "no-ablation-figure",
    params:
        i2i=lambda wc: ABLATION_POINTS[wc.afig]["i2i"],
        t2i=lambda wc: ABLATION_POINTS[wc.afig]["t2i"],
    log:
        "results/logs/report/{afig}.log",
    conda:
        "../envs/lumos.yaml"
    shell:
        "lumos ablation-figure --figure {wildcards.afig} --i2i {params.i2i:q} --t2i {params.t2i:q}"
        " --png {output.png} --csv {output.csv} > {log} 2>&1"
