# Image-to-video (Table 5, Figures 2d and S8): clip splits (the video Shapes world, or real videos
# ingested by many jobs at paper scale), their video features (per-frame latents, the first
# frame's CLS), Lumos-I2V fine-tuned from each prior of `i2v.priors`, samples from every eval
# split's first frames, and FVD / KVD / PIC against the real clips.
from lumos.workflow.jobs import clip_feature_jobs, clip_jobs  # noqa: E402

# The prior labels of `i2v.priors`, the evaluation splits, the first-frame condition encoder and
# PIC's encoder (the DAG's image encoder at small scale).
I2V_PRIORS = list(config["i2v"]["priors"])
I2V_MAIN = config["i2v"]["main"]
I2V_EVAL = config["i2v"]["eval_splits"]
I2V_ENCODER = config["i2v"]["encoder"]
I2V_PIC_ENCODER = config["components"].get("pic", {}).get("encoder", I2V_ENCODER)
if I2V_MAIN not in I2V_PRIORS:
    raise WorkflowError(f"config key 'i2v.main': {I2V_MAIN!r} is not a label of i2v.priors ({I2V_PRIORS})")
if "real" in I2V_PRIORS:
    raise WorkflowError("config key 'i2v.priors': the label 'real' is the metrics' sanity rows'; choose another")


localrules:
    gather_clips,
    gather_video_features,


I2V_CATEGORY = "Image-to-video (Section 4.2.3)"


rule clips_part:
    output:
        temp(directory("results/data/{clipsplit}.part{part}")),
    params:
        cfg=lambda wc: cfg_json(
            f"i2v.splits.{wc.clipsplit}",
            f"i2v.sources.{wc.clipsplit}",
            "i2v.frames",
            "i2v.stride",
            "data.image_size",
            "data.shard_size",
            "data.curation.max_pixels",
        ),
        parts=lambda wc: clip_jobs(config, wc.clipsplit),
    resources:
        **rule_resources("clips_part"),
    log:
        "results/logs/data/{clipsplit}.part{part}.log",
    benchmark:
        "results/benchmarks/data/{clipsplit}.part{part}.tsv"
    conda:
        "../envs/lumos.yaml"
    shell:
        "lumos clips --split {wildcards.clipsplit} --cfg {params.cfg:q} --part {wildcards.part} --parts {params.parts}"
        " --out {output} > {log} 2>&1"


rule gather_clips:
    input:
        lambda wc: parts(f"results/data/{wc.clipsplit}", clip_jobs(config, wc.clipsplit)),
    output:
        directory("results/data/{clipsplit}"),
    params:
        n=lambda wc: config["i2v"]["splits"][wc.clipsplit]["clips"],
    log:
        "results/logs/data/{clipsplit}.gather.log",
    conda:
        "../envs/lumos.yaml"
    shell:
        "lumos gather-clips --parts {input} --limit {params.n} --out {output} > {log} 2>&1"


rule video_features:
    input:
        data="results/data/{clipsplit}",
        components=trained("vae", I2V_ENCODER),
    output:
        temp(directory("results/features/{clipsplit}.part{part}")),
    params:
        cfg=cfg_json("components.vae", f"components.{I2V_ENCODER}", "features.batch_size", "i2v.encoder"),
        parts=lambda wc: clip_feature_jobs(config, wc.clipsplit),
    threads: 1
    resources:
        **rule_resources("video_features"),
    log:
        "results/logs/features/{clipsplit}.part{part}.log",
    benchmark:
        "results/benchmarks/features/{clipsplit}.part{part}.tsv"
    conda:
        "../envs/lumos.yaml"
    shell:
        "lumos video-features --threads {threads} --cfg {params.cfg:q} --data {input.data} --part {wildcards.part}"
        " --parts {params.parts} --out {output} > {log} 2>&1"


rule gather_video_features:
    input:
        lambda wc: parts(f"results/features/{wc.clipsplit}", clip_feature_jobs(config, wc.clipsplit)),
    output:
        directory("results/features/{clipsplit}"),
    log:
        "results/logs/features/{clipsplit}.gather.log",
    conda:
        "../envs/lumos.yaml"
    shell:
        "lumos gather --kind features --parts {input} --out {output} > {log} 2>&1"


rule i2v_finetune:
    input:
        features="results/features/video_train",
        prior=lambda wc: prior_model("i2v", wc.vprior),
    output:
        model=directory("results/i2v/{vprior}/model"),
        raw=directory("results/i2v/{vprior}/model_raw"),
        curve="results/i2v/{vprior}/loss.csv",
        plot="results/i2v/{vprior}/loss.png",
        summary="results/i2v/{vprior}/train_summary.json",
    params:
        cfg=cfg_json("i2v.train", "i2v.cond_dropout", "i2v.encoder", "pretrain.model"),
        prior=lambda wc, input: input.prior or "none",
        kind=lambda wc: prior_source("i2v", wc.vprior)[0],
        state="results/state/i2v/{vprior}",
    threads: 1
    resources:
        **rule_resources("i2v_finetune", signal=True),
    log:
        "results/logs/i2v/{vprior}.log",
    benchmark:
        "results/benchmarks/i2v/{vprior}.tsv"
    conda:
        "../envs/lumos.yaml"
    shell:
        "{resources.mpi} lumos launch --processes {resources.processes} --nodes {resources.nodes} --"
        " i2v-train --threads {threads} --cfg {params.cfg:q} --prior {params.prior} --prior-kind {params.kind}"
        " --features {input.features} --out-model {output.model} --out-raw {output.raw} --out-curve {output.curve}"
        " --out-plot {output.plot} --out-summary {output.summary} --state {params.state} > {log} 2>&1"


rule i2v_sample:
    input:
        model="results/i2v/{vprior}/model",
        features="results/features/{clipsplit}",
        components=trained("vae"),
    output:
        directory("results/i2v/{vprior}/samples/{clipsplit}"),
    params:
        cfg=cfg_json("components.vae", "sample", "i2v.eval", "i2v.encoder"),
        work="results/state/i2v_samples/{vprior}_{clipsplit}",
    threads: 1
    resources:
        **rule_resources("i2v_sample"),
    log:
        "results/logs/i2v/{vprior}.sample.{clipsplit}.log",
    benchmark:
        "results/benchmarks/i2v/{vprior}.sample.{clipsplit}.tsv"
    conda:
        "../envs/lumos.yaml"
    shell:
        "lumos i2v-sample --threads {threads} --cfg {params.cfg:q} --model {input.model} --features {input.features}"
        " --work {params.work} --out {output} > {log} 2>&1"


# `real`: the metrics' sanity rows on the real clips alone: FVD / KVD between the split's two
# halves (the floor) and between the split and the same clips with their frames shuffled.
rule i2v_metrics:
    input:
        # the samples a metrics job scores (none for the `real` sanity rows)
        unpack(lambda wc: {} if wc.vprior == "real" else {"samples": f"results/i2v/{wc.vprior}/samples/{wc.clipsplit}"}),
        data="results/data/{clipsplit}",
        components=trained("video_net", I2V_PIC_ENCODER),
    output:
        "results/i2v/{vprior}/eval/{clipsplit}.json",
    params:
        cfg=cfg_json("components.video_net", f"components.{I2V_PIC_ENCODER}", "components.pic", "i2v.eval"),
        samples=lambda wc, input: f"--samples {input.samples}" if "samples" in input.keys() else "--samples real",
    threads: 1
    resources:
        **rule_resources("i2v_metrics"),
    log:
        "results/logs/i2v/{vprior}.metrics.{clipsplit}.log",
    benchmark:
        "results/benchmarks/i2v/{vprior}.metrics.{clipsplit}.tsv"
    conda:
        "../envs/lumos.yaml"
    shell:
        "lumos i2v-metrics --threads {threads} --cfg {params.cfg:q} {params.samples} --data {input.data}"
        " --split {wildcards.clipsplit} --out {output} > {log} 2>&1"


# A Lumos-I2V fine-tune as a diffusers pipeline (first frame -> clip) with its model card, which
# lists its Table 5 numbers and takes its example first frame from the first eval split.
rule i2v_pipeline:
    input:
        model="results/i2v/{vprior}/model",
        summary="results/i2v/{vprior}/train_summary.json",
        metrics=expand("results/i2v/{{vprior}}/eval/{split}.json", split=I2V_EVAL),
        data=f"results/data/{I2V_EVAL[0]}",
        components=trained("vae", I2V_ENCODER),
    output:
        directory("results/i2v/{vprior}/pipeline"),
    params:
        cfg=cfg_json("components.vae", f"components.{I2V_ENCODER}", "i2v.encoder", "i2v.eval", "sample"),
    resources:
        **rule_resources("i2v_pipeline"),
    log:
        "results/logs/i2v/{vprior}_pipeline.log",
    benchmark:
        "results/benchmarks/i2v/{vprior}_pipeline.tsv"
    conda:
        "../envs/lumos.yaml"
    shell:
        "lumos export-pipeline --kind i2v --cfg {params.cfg:q} --model {input.model} --summary {input.summary}"
        " --metrics {input.metrics} --data {input.data} --name {wildcards.vprior} --out {output} > {log} 2>&1"


rule table5:
    input:
        [f"results/i2v/{label}/eval/{split}.json" for label in ["real", *I2V_PRIORS] for split in I2V_EVAL],
    output:
        csv=report("results/table5.csv", caption="../docs/report/table5.rst", category=I2V_CATEGORY),
        md="results/table5.md",
    params:
        cfg=cfg_json(
            "i2v.priors",
            "i2v.eval",
            "i2v.frames",
            "i2v.stride",
            "sample",
            "components.video_net",
            "components.pic",
            "data.image_size",
        ),
        rows=lambda wc, input: " ".join(input),
    log:
        "results/logs/report/table5.log",
    conda:
        "../envs/lumos.yaml"
    shell:
        "lumos table5 --cfg {params.cfg:q} --metrics {params.rows} --csv {output.csv} --md {output.md} > {log} 2>&1"


rule fig2d:
    input:
        nvs=[f"results/nvs/{label}/eval/final" for label in NVS_PRIORS],
        i2v=[f"results/i2v/{label}/eval/{split}.json" for label in I2V_PRIORS for split in I2V_EVAL],
    output:
        png=report("results/fig2d.png", caption="../docs/report/fig2d.rst", category=I2V_CATEGORY),
        csv=report("results/fig2d.csv", caption="../docs/report/fig2d.rst", category=I2V_CATEGORY),
    params:
        nvs=" ".join(f"{label}=results/nvs/{label}/eval/final/summary.json" for label in NVS_PRIORS),
    log:
        "results/logs/report/fig2d.log",
    conda:
        "../envs/lumos.yaml"
    shell:
        "lumos fig2d --nvs {params.nvs} --i2v {input.i2v} --png {output.png} --csv {output.csv} > {log} 2>&1"


rule figS8:
    input:
        samples=f"results/i2v/{I2V_MAIN}/samples/{I2V_EVAL[0]}",
        data=f"results/data/{I2V_EVAL[0]}",
    output:
        report("results/figS8.png", caption="../docs/report/figS8.rst", category=I2V_CATEGORY),
    params:
        cfg=cfg_json("i2v.eval"),
    log:
        "results/logs/report/figS8.log",
    conda:
        "../envs/lumos.yaml"
    shell:
        "lumos figS8 --cfg {params.cfg:q} --samples {input.samples} --data {input.data} --png {output} > {log} 2>&1"
