# Report: the paper's tables and figures. Each is marked for Snakemake's report (captions in
# docs/report/, one category per paper section):  snakemake --report results/report.html
from lumos.report.released import RELEASED_T2I_LABEL  # noqa: E402
from lumos.workflow.figures import class_curve_runs, fig12_runs, fig_runs, table1_beyond_runs  # noqa: E402
from lumos.workflow.splits import curated_splits, run_features  # noqa: E402

FIGURE_CATEGORY = "T2I from priors (Figures 2a, 2b, 8, 11, S1)"


localrules:
    table1,
    table2,
    table3,
    figure,
    fig12,
    official_scores,
    benchmarks,


# Table 1's rows beyond the paper: the REPA and REG priors (pretrain.table1_beyond).
TABLE1_BEYOND = table1_beyond_runs(config)

# Beyond the paper: the levers for shapes (config/levers.yaml), class priors' class-grid scores
# against pretraining steps.
CLASS_CURVES = class_curve_runs(config)


rule table1:
    input:
        fid=expand(
            "results/eval/fid/{run}_{split}.json",
            run=[
                "lumos_i2i",
                "rcg",
                "untrained",
                "real",
                *(["released_i2i"] if "i2i" in RELEASED else []),
                *TABLE1_BEYOND,
            ],
            split=EVAL_SPLITS,
        ),
        grid_data=f"results/data/{EVAL_SPLITS[0]}",
        # the curated splits among the table's data: its table notes any that came out short of its n
        splits=[
            f"results/data/{s}"
            for s in curated_splits(
                config,
                [
                    *(config["pretrain"]["runs"][r]["data"] for r in ("lumos_i2i", "rcg")),
                    *EVAL_SPLITS,
                    *(f"{e}_ref" for e in EVAL_SPLITS),
                ],
            )
        ],
        lumos=f"results/samples/lumos_i2i/{EVAL_SPLITS[0]}",
        rcg=f"results/samples/rcg/{EVAL_SPLITS[0]}",
    output:
        csv=report("results/table1.csv", caption="../docs/report/table1.rst", category="I2I (Section 4.1)"),
        md="results/table1.md",
        grid=report(
            "results/table1_samples.png", caption="../docs/report/table1_samples.rst", category="I2I (Section 4.1)"
        ),
    params:
        cfg=cfg_json("eval.grid_images"),
    log:
        "results/logs/report/table1.log",
    conda:
        "../envs/lumos.yaml"
    shell:
        "lumos table1 --cfg {params.cfg:q} --fid {input.fid} --csv {output.csv} --md {output.md}"
        " --grid {output.grid} --grid-data {input.grid_data}"
        " --grid-samples Lumos-I2I={input.lumos} RCG={input.rcg} --splits {input.splits} > {log} 2>&1"


# With config released.t2i, Tables 2 and 3 gain the row "Lumos-T2I (released weights, evaluated
# here)" and results/released_t2i_samples.png is made with Table 2 (rules/released.smk).
RELEASED_T2I = "t2i" in RELEASED


rule class_curves:
    input:
        snapshots=expand("results/pretrain/{run}/snapshots", run=CLASS_CURVES),
        components=trained("vae", "fid_net"),
    output:
        png="results/class_curves.png",
        csv="results/class_curves.csv",
    params:
        cfg=cfg_json("components.vae", "components.fid_net", "sample"),
        runs=[f"{run}=results/pretrain/{run}/snapshots" for run in CLASS_CURVES],
    threads: 1
    log:
        "results/logs/report/class_curves.log",
    benchmark:
        "results/benchmarks/report/class_curves.tsv"
    conda:
        "../envs/lumos.yaml"
    shell:
        "lumos class-curves --threads {threads} --cfg {params.cfg:q} --runs {params.runs:q}"
        " --png {output.png} --csv {output.csv} > {log} 2>&1"


rule table2:
    input:
        short=f"results/eval/t2i/{T2I_MAIN}/final/fid_coco_short.json",
        long=f"results/eval/t2i/{T2I_MAIN}/final/fid_coco_long.json",
        untrained="results/eval/t2i/untrained/final/fid_coco_short.json",
        real="results/eval/fid/real_coco.json",
        summary=f"results/t2i/{T2I_MAIN}/train_summary.json",
        grid="results/t2i_samples.png",
        released=["results/eval/t2i/released_t2i/fid_coco_short.json"] if RELEASED_T2I else [],
        released_grid=["results/released_t2i_samples.png"] if RELEASED_T2I else [],
        splits=[f"results/data/{s}" for s in curated_splits(config, ["pairs", "coco", "coco_ref"])],
    output:
        csv=report("results/table2.csv", caption="../docs/report/table2.rst", category="T2I (Section 4.2.1)"),
        md="results/table2.md",
    params:
        cfg=cfg_json(*(["released.t2i_sample"] if RELEASED_T2I else [])),
        released=lambda wc, input: f"--released {input.released}" if input.released else "",
    log:
        "results/logs/report/table2.log",
    conda:
        "../envs/lumos.yaml"
    shell:
        "lumos table2 --cfg {params.cfg:q} --short {input.short} --long {input.long}"
        " --untrained {input.untrained} --real {input.real} --summary {input.summary} {params.released}"
        " --splits {input.splits} --csv {output.csv} --md {output.md} > {log} 2>&1"


# Table 3 reads the official evaluators' scores for Lumos-T2I (and the released T2I model,
# `released_t2i`, with config released.t2i) when configured (paper), otherwise the Shapes-world
# analogues' folders for Lumos-T2I, the untrained model and the ground-truth renders (the detector's
# own accuracy). TABLE3_ROWS: `--row LABEL=GENEVAL_JSON,DPG_JSON[,MODEL]` arguments of `lumos table3`.
if OFFICIAL:
    _table3 = {"Lumos-T2I": (T2I_MAIN, f"results/t2i/{T2I_MAIN}/model")}
    if RELEASED_T2I:
        _table3[RELEASED_T2I_LABEL] = ("released_t2i", "results/released/t2i/model")
    TABLE3_INPUTS = [
        f"results/eval/t2i/{ft}/{b}_official/scores.json" for ft, _ in _table3.values() for b in ("geneval", "dpg")
    ]
    TABLE3_ROWS = [
        f"{label}=results/eval/t2i/{ft}/geneval_official/scores.json,results/eval/t2i/{ft}/dpg_official/scores.json,{model}"
        for label, (ft, model) in _table3.items()
    ]
else:
    _table3 = {"Lumos-T2I": T2I_MAIN, "untrained DiT": "untrained", "ground-truth renders": "ground_truth"}
    TABLE3_INPUTS = [f"results/eval/t2i/{ft}/{b}" for ft in _table3.values() for b in ("geneval", "dpg")]
    TABLE3_ROWS = [
        f"{label}=results/eval/t2i/{ft}/geneval/scores.json,results/eval/t2i/{ft}/dpg/scores.json"
        + (f",results/t2i/{T2I_MAIN}/model" if ft == T2I_MAIN else "")
        for label, ft in _table3.items()
    ]


rule table3:
    input:
        scores=TABLE3_INPUTS,
        model=f"results/t2i/{T2I_MAIN}/model",
        released=["results/released/t2i/model"] if RELEASED_T2I else [],
    output:
        csv=report("results/table3.csv", caption="../docs/report/table3.rst", category="T2I (Section 4.2.1)"),
        md="results/table3.md",
    params:
        cfg=cfg_json(*(["released.t2i_sample"] if RELEASED_T2I else [])),
        official="--official" if OFFICIAL else "",
        rows=TABLE3_ROWS,
    log:
        "results/logs/report/table3.log",
    conda:
        "../envs/lumos.yaml"
    shell:
        "lumos table3 --cfg {params.cfg:q} {params.official} --row {params.rows:q} --csv {output.csv} --md {output.md}"
        " > {log} 2>&1"


rule t2i_grid:
    input:
        f"results/t2i/{T2I_MAIN}/pipeline",
    output:
        report("results/t2i_samples.png", caption="../docs/report/t2i_samples.rst", category="T2I (Section 4.2.1)"),
    params:
        cfg=cfg_json("sample"),
        # the Shapes world's prompts, enlarged 4x; on real data the paper's prompts at the model's size
        prompts=(
            ""
            if config["data"]["source"] == "shapes"
            else "--prompts paper --images-per-prompt 1 --columns 6 --scale 1"
        ),
    threads: 1
    resources:
        **rule_resources("t2i_sample"),  # it samples the T2I model: a job, never on the login node
    log:
        "results/logs/report/t2i_grid.log",
    benchmark:
        "results/benchmarks/report/t2i_grid.tsv"
    conda:
        "../envs/lumos.yaml"
    shell:
        "lumos t2i-grid --threads {threads} --cfg {params.cfg:q} --pipeline {input} {params.prompts} --out {output}"
        " > {log} 2>&1"


rule figure:
    input:
        # final FID + CLIP score per fine-tune (fig2a/S1), or the FID of every snapshot (curves against
        # fine-tuning steps)
        lambda wc: (
            [
                f"results/eval/t2i/{ft}/final/{m}_coco_short.json"
                for ft in fig_runs(config, wc.fig).values()
                for m in ("fid", "clip")
            ]
            if wc.fig in ("fig2a", "figS1")
            else [
                f"results/eval/t2i/{ft}/{s}/fid_coco_short.json"
                for ft in fig_runs(config, wc.fig).values()
                for s in SNAPSHOTS
            ]
        ),
    output:
        png=report(
            "results/{fig}.png", caption="../docs/report/figure.rst", category=FIGURE_CATEGORY, subcategory="{fig}"
        ),
        csv=report(
            "results/{fig}.csv", caption="../docs/report/figure.rst", category=FIGURE_CATEGORY, subcategory="{fig}"
        ),
    wildcard_constraints:
        fig="fig2a|figS1|fig2b|fig8|fig11b|fig11",
    params:
        cfg=cfg_json(),
        runs=lambda wc: [f"{k}={v}" for k, v in fig_runs(config, wc.fig).items()],
    log:
        "results/logs/report/{fig}.log",
    conda:
        "../envs/lumos.yaml"
    shell:
        "lumos figure --cfg {params.cfg:q} --figure {wildcards.fig} --metrics {input} --runs {params.runs:q}"
        " --png {output.png} --csv {output.csv} > {log} 2>&1"


# Figure S7: interpolation with the I2I prior between pairs of evaluation images.
INTERP_RUN = config["pretrain"]["interpolation"]["run"]
INTERP_ENCODER = config["pretrain"]["runs"].get(INTERP_RUN, {}).get("encoder", "dino")


rule interpolation:
    input:
        model=f"results/pretrain/{INTERP_RUN}/model",
        data=f"results/data/{EVAL_SPLITS[0]}",
        features=f"results/features/{run_features(config, INTERP_RUN, EVAL_SPLITS[0])}",
        components=trained("vae", INTERP_ENCODER),
    output:
        png=report("results/figS7.png", caption="../docs/report/figS7.rst", category="I2I (Section 4.1)"),
        csv=report("results/figS7.csv", caption="../docs/report/figS7.rst", category="I2I (Section 4.1)"),
    params:
        cfg=cfg_json(
            "pretrain.interpolation",
            f"pretrain.runs.{INTERP_RUN}",
            "components.vae",
            f"components.{INTERP_ENCODER}",
            "sample",
        ),
    threads: 1
    resources:
        **rule_resources("sample"),  # it samples the prior
    log:
        "results/logs/report/figS7.log",
    benchmark:
        "results/benchmarks/report/figS7.tsv"
    conda:
        "../envs/lumos.yaml"
    shell:
        "lumos interpolate --cfg {params.cfg:q} --model {input.model} --data {input.data}"
        " --features {input.features} --png {output.png} --csv {output.csv} > {log} 2>&1"


# Figure 12: I2I FID on the first eval split against condition dropout (extra pretraining runs
# `<run>_drop<P>`) and guidance scale (the same run sampled as `<run>_cfg<G>`).
rule fig12:
    input:
        lambda wc: [f"results/eval/fid/{run}_{EVAL_SPLITS[0]}.json" for run in fig12_runs(config).values()],
    output:
        png=report("results/fig12.png", caption="../docs/report/fig12.rst", category="I2I (Section 4.1)"),
        csv=report("results/fig12.csv", caption="../docs/report/fig12.rst", category="I2I (Section 4.1)"),
    params:
        cfg=cfg_json(),
        dropout=lambda wc: [
            f"{v}=results/eval/fid/{r}_{EVAL_SPLITS[0]}.json"
            for (k, v), r in fig12_runs(config).items()
            if k == "dropout"
        ],
        guidance=lambda wc: [
            f"{v}=results/eval/fid/{r}_{EVAL_SPLITS[0]}.json"
            for (k, v), r in fig12_runs(config).items()
            if k == "guidance"
        ],
    log:
        "results/logs/report/fig12.log",
    conda:
        "../envs/lumos.yaml"
    shell:
        "lumos fig12 --cfg {params.cfg:q} --dropout {params.dropout} --guidance {params.guidance}"
        " --png {output.png} --csv {output.csv} > {log} 2>&1"


# Per-job wall time and memory: each compute rule's `benchmark:` file (results/benchmarks/<stage>/
# <the job's log name>.tsv) gathered into one table for the report. Its inputs are the other targets
# of `rule all`, so it is made last, when every job of the run has written its file.
rule benchmarks:
    input:
        # every target of rule all, or those in report.benchmarks_of (one table's jobs)
        lambda wc: config["report"]["benchmarks_of"] or [f for f in rules.all.input if f != "results/benchmarks.csv"],
    output:
        report(
            "results/benchmarks.csv", caption="../docs/report/benchmarks.rst", category="Runtime and memory (per job)"
        ),
    log:
        "results/logs/report/benchmarks.log",
    conda:
        "../envs/lumos.yaml"
    shell:
        "lumos job-benchmarks --folder results/benchmarks --csv {output} > {log} 2>&1"
