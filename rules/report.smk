# Report: the paper's tables and figures. Each is marked for Snakemake's report (captions in
# docs/report/, one category per paper section):  snakemake --report results/report.html

FIGURE_CATEGORY = "T2I from priors (Figures 2a, 2b, 8, 11, S1)"

localrules:
    table1,
    table2,
    table3,
    figure,
    fig12,
    ablation_figure,
    official_scores,


rule table1:
    input:
        fid=expand(
            "results/eval/fid/{run}_{split}.json",
            run=["lumos_i2i", "rcg", "untrained", "real", *(["released_i2i"] if "i2i" in RELEASED else [])],
            split=EVAL_SPLITS,
        ),
        grid_data=f"results/data/{EVAL_SPLITS[0]}",
        splits=table_splits(
            *(config["pretrain"]["runs"][r].get("data", "pool") for r in ("lumos_i2i", "rcg")),
            *EVAL_SPLITS,
            *(f"{s}_ref" for s in EVAL_SPLITS),
        ),
        lumos=f"results/samples/lumos_i2i/{EVAL_SPLITS[0]}",
        rcg=f"results/samples/rcg/{EVAL_SPLITS[0]}",
    output:
        csv=report("results/table1.csv", caption="../docs/report/table1.rst", category="I2I (Section 4.1)"),
        md="results/table1.md",
        grid=report("results/table1_samples.png", caption="../docs/report/table1_samples.rst",
                    category="I2I (Section 4.1)"),
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
        splits=table_splits("pairs", "coco", "coco_ref"),
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


rule table3:
    input:
        scores=table3_inputs(),
        model=f"results/t2i/{T2I_MAIN}/model",
        released=["results/released/t2i/model"] if RELEASED_T2I else [],
    output:
        csv=report("results/table3.csv", caption="../docs/report/table3.rst", category="T2I (Section 4.2.1)"),
        md="results/table3.md",
    params:
        cfg=cfg_json(*(["released.t2i_sample"] if RELEASED_T2I else [])),
        official="--official" if OFFICIAL else "",
        rows=table3_rows(),
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
        prompts=""
        if config["data"]["source"] == "shapes"
        else "--prompts paper --images-per-prompt 1 --columns 6 --scale 1",
    threads: 1
    resources:
        **rule_resources("t2i_sample"),  # it samples the T2I model: a job, never on the login node
    log:
        "results/logs/report/t2i_grid.log",
    conda:
        "../envs/lumos.yaml"
    shell:
        "lumos t2i-grid --threads {threads} --cfg {params.cfg:q} --pipeline {input} {params.prompts} --out {output}"
        " > {log} 2>&1"


rule figure:
    input:
        lambda wc: fig_inputs(wc.fig),
    output:
        png=report("results/{fig}.png", caption="../docs/report/figure.rst", category=FIGURE_CATEGORY,
                   subcategory="{fig}"),
        csv=report("results/{fig}.csv", caption="../docs/report/figure.rst", category=FIGURE_CATEGORY,
                   subcategory="{fig}"),
    wildcard_constraints:
        fig="fig2a|figS1|fig2b|fig8|fig11b|fig11",
    params:
        cfg=cfg_json(),
        runs=lambda wc: [f"{k}={v}" for k, v in fig_runs("fig2a" if wc.fig == "figS1" else wc.fig).items()],
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
        features=f"results/features/{EVAL_SPLITS[0]}{run_encoder_suffix(INTERP_RUN)}",
        components=trained("vae", INTERP_ENCODER),
    output:
        png=report("results/figS7.png", caption="../docs/report/figS7.rst", category="I2I (Section 4.1)"),
        csv=report("results/figS7.csv", caption="../docs/report/figS7.rst", category="I2I (Section 4.1)"),
    params:
        cfg=cfg_json(
            "pretrain.interpolation", f"pretrain.runs.{INTERP_RUN}", "components.vae", f"components.{INTERP_ENCODER}", "sample"
        ),
    threads: 1
    resources:
        **rule_resources("sample"),  # it samples the prior
    log:
        "results/logs/report/figS7.log",
    conda:
        "../envs/lumos.yaml"
    shell:
        "lumos interpolate --cfg {params.cfg:q} --model {input.model} --data {input.data}"
        " --features {input.features} --png {output.png} --csv {output.csv} > {log} 2>&1"


# Figure 12: I2I FID on the first eval split against condition dropout (extra pretraining runs
# `<run>_drop<P>`) and guidance scale (the same run sampled as `<run>_cfg<G>`).
rule fig12:
    input:
        lambda wc: [f"results/eval/fid/{run}_{EVAL_SPLITS[0]}.json" for run in fig12_runs().values()],
    output:
        png=report("results/fig12.png", caption="../docs/report/fig12.rst", category="I2I (Section 4.1)"),
        csv=report("results/fig12.csv", caption="../docs/report/fig12.rst", category="I2I (Section 4.1)"),
    params:
        cfg=cfg_json(),
        dropout=lambda wc: [f"{v}=results/eval/fid/{r}_{EVAL_SPLITS[0]}.json" for (k, v), r in fig12_runs().items()
                            if k == "dropout"],
        guidance=lambda wc: [f"{v}=results/eval/fid/{r}_{EVAL_SPLITS[0]}.json" for (k, v), r in fig12_runs().items()
                             if k == "guidance"],
    log:
        "results/logs/report/fig12.log",
    conda:
        "../envs/lumos.yaml"
    shell:
        "lumos fig12 --cfg {params.cfg:q} --dropout {params.dropout} --guidance {params.guidance}"
        " --png {output.png} --csv {output.csv} > {log} 2>&1"


# The ablation figures of section 4.3 / F (Figures 9, 10, S2, S3; 2c is 10's T2I panel): I2I FID
# against pretraining steps (EMA snapshots sampled as `<run>_step<N>`) and the FID of each prior's
# T2I fine-tune against fine-tuning steps.
rule ablation_figure:
    input:
        lambda wc: [f.split(":", 1)[1] for f in (*ablation_files(wc.afig)["i2i"], *ablation_files(wc.afig)["t2i"])],
    output:
        png=report("results/{afig}.png", caption="../docs/report/ablation.rst", category="Ablations (Section 4.3, F)",
                   subcategory="{afig}"),
        csv=report("results/{afig}.csv", caption="../docs/report/ablation.rst", category="Ablations (Section 4.3, F)",
                   subcategory="{afig}"),
    wildcard_constraints:
        afig="|".join([*ABLATIONS, *(["fig2c"] if "fig10" in ABLATIONS else [])]) or "no-ablation-figure",
    params:
        i2i=lambda wc: ablation_files(wc.afig)["i2i"],
        t2i=lambda wc: ablation_files(wc.afig)["t2i"],
    log:
        "results/logs/report/{afig}.log",
    conda:
        "../envs/lumos.yaml"
    shell:
        "lumos ablation-figure --figure {wildcards.afig} --i2i {params.i2i:q} --t2i {params.t2i:q}"
        " --png {output.png} --csv {output.csv} > {log} 2>&1"
