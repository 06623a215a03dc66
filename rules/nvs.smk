# Novel view synthesis (Table 4, Figures 5 and 7): rendered-view splits (the 3D Shapes world, or
# imported renders at paper scale), their features through the common `features` rule, Lumos-NVS
# fine-tuned from each prior of `nvs.priors`, and its evaluation on the held-out test objects.
from lumos.workflow.inputs import lgm_weights  # noqa: E402
from lumos.workflow.jobs import nvs_eval_objects, nvs_saved_views, view_jobs  # noqa: E402
from lumos.workflow.snapshots import nvs_snapshots  # noqa: E402

# The prior labels of `nvs.priors` (label -> none | pretrain run | T2I fine-tune), the snapshots of
# Figure 5's curves and the prior of Table 4's Lumos-NVS row.
NVS_PRIORS = list(config["nvs"]["priors"])
NVS_MAIN = config["nvs"]["main"]
NVS_SNAPSHOTS = nvs_snapshots(config)
if NVS_MAIN not in NVS_PRIORS:
    raise WorkflowError(f"config key 'nvs.main': {NVS_MAIN!r} is not a label of nvs.priors ({NVS_PRIORS})")
if {"input", "vae"} & set(NVS_PRIORS):
    raise WorkflowError("config key 'nvs.priors': the labels 'input' and 'vae' are the baseline's and the ceiling's")
# The VAE whose decoder is fine-tuned on the NVS renders (`nvs.decoder`) decodes the evaluated views.
NVS_DECODER = {"decoder": "results/components/vae_nvs"} if config["nvs"]["decoder"] else {}
# LGM reconstruction (rules lgm_inputs, lgm_reconstruct): optional, paper preset only, built for
# Table 4's Lumos-NVS prior when `nvs.lgm` is set.
LGM = config["nvs"]["lgm"] or {}
LGM_TARGETS = [f"results/nvs/{NVS_MAIN}/lgm"] if LGM else []
if LGM and config["preset"] != "paper":
    raise WorkflowError(
        f"config key 'nvs.lgm' is for the paper preset only, not {config['preset']!r}: "
        "LGM needs CUDA and its released weights"
    )


localrules:
    gather_views,
    lgm_inputs,


ruleorder: gather_views > gather_data
ruleorder: views_part > data_part


NVS_CATEGORY = "Novel view synthesis (Section 4.2.2)"


rule views_part:
    output:
        temp(directory("results/data/{vsplit}.part{part}")),
    params:
        cfg=lambda wc: cfg_json(
            f"nvs.splits.{wc.vsplit}", "nvs.paths", "nvs.camera", "data.image_size", "data.shard_size"
        ),
        parts=lambda wc: view_jobs(config, wc.vsplit),
    resources:
        **rule_resources("views"),
    log:
        "results/logs/data/{vsplit}.part{part}.log",
    benchmark:
        "results/benchmarks/data/{vsplit}.part{part}.tsv"
    conda:
        "../envs/lumos.yaml"
    shell:
        "lumos views --split {wildcards.vsplit} --cfg {params.cfg:q} --part {wildcards.part} --parts {params.parts}"
        " --out {output} > {log} 2>&1"


rule gather_views:
    input:
        lambda wc: parts(f"results/data/{wc.vsplit}", view_jobs(config, wc.vsplit)),
    output:
        directory("results/data/{vsplit}"),
    log:
        "results/logs/data/{vsplit}.gather.log",
    conda:
        "../envs/lumos.yaml"
    shell:
        "lumos gather-views --parts {input} --out {output} > {log} 2>&1"


rule nvs_finetune:
    input:
        features="results/features/nvs_train",
        prior=lambda wc: prior_model("nvs", wc.prior),
    output:
        model=directory("results/nvs/{prior}/model"),
        raw=directory("results/nvs/{prior}/model_raw"),
        snapshots=directory("results/nvs/{prior}/snapshots"),
        curve="results/nvs/{prior}/loss.csv",
        plot="results/nvs/{prior}/loss.png",
        summary="results/nvs/{prior}/train_summary.json",
    params:
        cfg=cfg_json(
            "nvs.train",
            "nvs.cond_dropout",
            "nvs.encoder",
            "nvs.snapshot_every",
            "nvs.prediction_type",
            "pretrain.model",
        ),
        prior=lambda wc, input: input.prior or "none",
        kind=lambda wc: prior_source("nvs", wc.prior)[0],
        state="results/state/nvs/{prior}",
    threads: 1
    resources:
        **rule_resources("nvs_finetune", signal=True),
    log:
        "results/logs/nvs/{prior}.log",
    benchmark:
        "results/benchmarks/nvs/{prior}.tsv"
    conda:
        "../envs/lumos.yaml"
    shell:
        "{resources.mpi} lumos launch --processes {resources.processes} --nodes {resources.nodes} --"
        " nvs-train --threads {threads} --cfg {params.cfg:q} --prior {params.prior} --prior-kind {params.kind}"
        " --features {input.features} --out-model {output.model} --out-raw {output.raw} --out-curve {output.curve}"
        " --out-plot {output.plot} --out-summary {output.summary} --out-snapshots {output.snapshots}"
        " --state {params.state} > {log} 2>&1"


# The VAE with its decoder fine-tuned on the NVS training renders (`nvs.decoder`), which decodes the
# evaluated views: the encoder is frozen, so latents, features and priors stay those of components.vae.
rule nvs_decoder:
    input:
        trained("vae"),
        data="results/data/nvs_train",
    output:
        directory("results/components/vae_nvs"),
    params:
        cfg=cfg_json("components.vae", "nvs.decoder"),
    threads: 1
    resources:
        **rule_resources("nvs_decoder"),
    log:
        "results/logs/nvs/decoder.log",
    benchmark:
        "results/benchmarks/nvs/decoder.tsv"
    conda:
        "../envs/lumos.yaml"
    shell:
        "lumos nvs-decoder --threads {threads} --cfg {params.cfg:q} --data {input.data} --out {output} > {log} 2>&1"


# A Lumos-NVS fine-tune as a diffusers pipeline (input view + camera -> view) with its model card,
# which lists its Table 4 numbers and draws its example (a test object's input view and the camera
# of its first target) from the test split. Its VAE is the one that decodes the evaluated views.
rule nvs_pipeline:
    input:
        unpack(lambda wc: {"components": trained("vae", config["nvs"]["encoder"]), **NVS_DECODER}),
        model="results/nvs/{prior}/model",
        summary="results/nvs/{prior}/train_summary.json",
        evaluated="results/nvs/{prior}/eval/final",
        data="results/data/nvs_test",
    output:
        directory("results/nvs/{prior}/pipeline"),
    params:
        cfg=cfg_json("components.vae", f"components.{config['nvs']['encoder']}", "nvs.encoder", "nvs.eval", "sample"),
        vae=lambda wc, input: f" --vae {input.decoder}" if "decoder" in input.keys() else "",
    resources:
        **rule_resources("nvs_pipeline"),
    log:
        "results/logs/nvs/{prior}_pipeline.log",
    benchmark:
        "results/benchmarks/nvs/{prior}_pipeline.tsv"
    conda:
        "../envs/lumos.yaml"
    shell:
        "lumos export-pipeline --kind nvs --cfg {params.cfg:q} --model {input.model}{params.vae}"
        " --summary {input.summary} --metrics {input.evaluated}/summary.json --data {input.data}"
        " --name {wildcards.prior} --out {output} > {log} 2>&1"


# `final`: Table 4 (all `nvs.eval.objects`, the first figure_objects' views kept for Figure 7);
# `step-<n>`: a snapshot, Figure 5's point (`nvs.eval.curve_objects`). Prior `input` is the
# baseline that returns the input view, `vae` the target views through the VAE (the ceiling).
rule nvs_eval:
    input:
        # the evaluated model (none for the `input` baseline) and the VAE that decodes its views
        unpack(
            lambda wc: (
                {}
                if wc.prior == "input"
                else {
                    **(
                        {}
                        if wc.prior == "vae"
                        else {"model": f"results/nvs/{wc.prior}/{'model' if wc.ckpt == 'final' else 'snapshots'}"}
                    ),
                    "components": trained("vae"),
                    **NVS_DECODER,
                }
            )
        ),
        data="results/data/nvs_test",
        features="results/features/nvs_test",
    output:
        directory("results/nvs/{prior}/eval/{ckpt}"),
    params:
        cfg=cfg_json("components.vae", "nvs.encoder", "nvs.eval", "sample"),
        model=lambda wc, input: (
            wc.prior
            if wc.prior in ("input", "vae")
            else input.model if wc.ckpt == "final" else f"{input.model}/{wc.ckpt}"
        ),
        objects=lambda wc: (
            f" --objects {nvs_eval_objects(config, wc.ckpt)}" if nvs_eval_objects(config, wc.ckpt) else ""
        ),
        views=lambda wc: nvs_saved_views(config, wc.prior, wc.ckpt),
        decoder=lambda wc, input: f" --decoder {input.decoder}" if "decoder" in input.keys() else "",
    threads: 1
    resources:
        **rule_resources("nvs_eval"),
    log:
        "results/logs/nvs/{prior}.eval.{ckpt}.log",
    benchmark:
        "results/benchmarks/nvs/{prior}.eval.{ckpt}.tsv"
    conda:
        "../envs/lumos.yaml"
    shell:
        "lumos nvs-eval --threads {threads} --cfg {params.cfg:q} --model {params.model} --data {input.data}"
        " --features {input.features}{params.objects}{params.decoder} --save-views {params.views} --out {output}"
        " > {log} 2>&1"


rule table4:
    input:
        **{label: f"results/nvs/{label}/eval/final" for label in ["input", "vae", *NVS_PRIORS]},
    output:
        csv=report("results/table4.csv", caption="../docs/report/table4.rst", category=NVS_CATEGORY),
        md="results/table4.md",
    params:
        cfg=cfg_json("nvs.main", "nvs.priors", "nvs.eval", "sample"),
        rows=lambda wc, input: " ".join(f"{k}={v}/summary.json" for k, v in input.items()),
    log:
        "results/logs/report/table4.log",
    conda:
        "../envs/lumos.yaml"
    shell:
        "lumos table4 --cfg {params.cfg:q} --rows {params.rows} --csv {output.csv} --md {output.md} > {log} 2>&1"


rule fig5:
    input:
        [f"results/nvs/{label}/eval/{s}" for label in NVS_PRIORS for s in NVS_SNAPSHOTS],
    output:
        png=report("results/fig5.png", caption="../docs/report/fig5.rst", category=NVS_CATEGORY),
        csv=report("results/fig5.csv", caption="../docs/report/fig5.rst", category=NVS_CATEGORY),
    params:
        points=" ".join(
            f"{label}:{int(s.split('-')[1])}=results/nvs/{label}/eval/{s}/summary.json"
            for label in NVS_PRIORS
            for s in NVS_SNAPSHOTS
        ),
    log:
        "results/logs/report/fig5.log",
    conda:
        "../envs/lumos.yaml"
    shell:
        "lumos fig5 --points {params.points} --png {output.png} --csv {output.csv} > {log} 2>&1"


rule fig7:
    input:
        evaluated=f"results/nvs/{NVS_MAIN}/eval/final",
        data="results/data/nvs_test",
    output:
        report("results/fig7.png", caption="../docs/report/fig7.rst", category=NVS_CATEGORY),
    params:
        cfg=cfg_json("nvs.eval"),
    log:
        "results/logs/report/fig7.log",
    conda:
        "../envs/lumos.yaml"
    shell:
        "lumos fig7 --cfg {params.cfg:q} --views {input.evaluated}/views --data {input.data} --png {output} > {log} 2>&1"


# Optional, paper preset only (`nvs.lgm`): LGM (3DTopia/LGM) turns four generated views of each of
# the first test objects into 3D Gaussians (Figure S6's right column), in its own conda env
# (envs/lgm.yaml: CUDA, its rasteriser compiled at deployment). Untested here: the development
# machine has no GPU, no CUDA compiler for the rasteriser and no LGM weights.
rule lgm_inputs:
    input:
        evaluated="results/nvs/{prior}/eval/final",
        data="results/data/nvs_test",
    output:
        directory("results/nvs/{prior}/lgm_inputs"),
    params:
        objects=LGM.get("objects", 0),
    log:
        "results/logs/nvs/{prior}.lgm_inputs.log",
    conda:
        "../envs/lumos.yaml"
    shell:
        "lumos lgm-inputs --views {input.evaluated}/views --data {input.data} --objects {params.objects}"
        " --out {output} > {log} 2>&1"


rule lgm_reconstruct:
    input:
        views="results/nvs/{prior}/lgm_inputs",
        weights=lambda wc: lgm_weights(config),  # checked: a missing repo or weights file names its key
    output:
        directory("results/nvs/{prior}/lgm"),
    params:
        repo=LGM.get("repo", ""),
        variant=LGM.get("variant", ""),
        run=os.path.join(workflow.basedir, "lumos", "tasks", "lgm_run.py"),
    resources:
        **rule_resources("lgm"),
    log:
        "results/logs/nvs/{prior}.lgm.log",
    benchmark:
        "results/benchmarks/nvs/{prior}.lgm.tsv"
    conda:
        "../envs/lgm.yaml"
    shell:
        "python {params.run:q} --repo {params.repo:q} --weights {input.weights:q} --variant {params.variant}"
        " --inputs {input.views} --out {output} > {log} 2>&1"
