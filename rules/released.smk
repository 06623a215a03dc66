# The authors' released T2I model (config `released.t2i`, paper preset), imported by
# `import_released` (rules/pretrain.smk) into results/released/t2i/model. It reads T5 v1.1 XXL
# caption tokens (`components.t5_released`, not the Flan-T5-XXL of our fine-tunes) and is sampled
# as it was trained and as the authors sample it (`released.t2i_sample`): 1024 px square, with
# that size and aspect ratio 1 as its micro-conditions, DPM-Solver++ 20 steps at guidance 4.5.
# Its rows:
#   Table 2: FID on the COCO split from its short captions, against the same COCO images
#            curated at Inception's input size (`coco_299px`: neither side is upscaled);
#   Table 3: the official GenEval / DPG-Bench evaluators (rules official_images ... official_scores
#            with ft = released_t2i, from the pipeline exported here);
#   results/released_t2i_samples.png: the paper's own prompts (Figures 1a, S4, S5).
# Nothing here runs, and T5 v1.1 is never loaded, unless `released.t2i` is set; outside the paper
# preset the key stops the workflow, naming what is missing.
from lumos.eval.fid import INCEPTION_SIZE  # noqa: E402
from lumos.workflow.inputs import released_t2i_missing  # noqa: E402
from lumos.workflow.jobs import feature_jobs, released_sample_jobs  # noqa: E402
from lumos.workflow.splits import split_size  # noqa: E402

if "t2i" in RELEASED and released_t2i_missing(config):
    raise WorkflowError(
        f"config key 'released.t2i' is set, but the released T2I rows are built on the paper "
        f"preset only (--configfile config/paper.yaml): missing {'; '.join(released_t2i_missing(config))}"
    )


localrules:
    gather_released_text,
    gather_released_samples,


rule released_text_features:
    input:
        data="results/data/{split}",
    output:
        temp(directory("results/released/t2i/text/{split}.part{part}")),
    params:
        cfg=cfg_json("components.t5_released", "features.batch_size"),
        parts=lambda wc: feature_jobs(config, wc.split),
    threads: 1
    resources:
        **rule_resources("text_features"),
    log:
        "results/logs/released/t2i_text_{split}.part{part}.log",
    benchmark:
        "results/benchmarks/released/t2i_text_{split}.part{part}.tsv"
    conda:
        "../envs/lumos.yaml"
    shell:
        "lumos text-features --threads {threads} --cfg {params.cfg:q} --data {input.data} --encoders t5_released"
        " --part {wildcards.part} --parts {params.parts} --out {output} > {log} 2>&1"


rule gather_released_text:
    input:
        lambda wc: parts(f"results/released/t2i/text/{wc.split}", feature_jobs(config, wc.split)),
    output:
        directory("results/released/t2i/text/{split}"),
    log:
        "results/logs/released/t2i_text_{split}.gather.log",
    conda:
        "../envs/lumos.yaml"
    shell:
        "lumos gather --kind features --parts {input} --out {output} > {log} 2>&1"


rule released_t2i_sample:
    input:
        model="results/released/t2i/model",
        text="results/released/t2i/text/{split}",
        components=trained("vae"),
    output:
        temp(directory("results/released/t2i/samples/{split}.part{part}")),
    params:
        cfg=cfg_json("released.t2i_sample", "components.vae"),
        n=lambda wc: split_size(config, wc.split),
        parts=lambda wc: released_sample_jobs(config, wc.split),
        work="results/state/released/t2i/samples/{split}.part{part}",
    threads: 1
    resources:
        **rule_resources("t2i_sample"),
    log:
        "results/logs/released/t2i_sample_{split}.part{part}.log",
    benchmark:
        "results/benchmarks/released/t2i_sample_{split}.part{part}.tsv"
    conda:
        "../envs/lumos.yaml"
    shell:
        "lumos released-t2i-sample --threads {threads} --cfg {params.cfg:q} --model {input.model}"
        " --text {input.text} --encoder t5_released --n-samples {params.n} --part {wildcards.part}"
        " --parts {params.parts} --out {output} --work {params.work} > {log} 2>&1"


rule gather_released_samples:
    input:
        lambda wc: parts(f"results/released/t2i/samples/{wc.split}", released_sample_jobs(config, wc.split)),
    output:
        directory("results/released/t2i/samples/{split}"),
    log:
        "results/logs/released/t2i_sample_{split}.gather.log",
    conda:
        "../envs/lumos.yaml"
    shell:
        "lumos gather --kind samples --parts {input} --out {output} > {log} 2>&1"


rule released_t2i_fid:
    input:
        samples="results/released/t2i/samples/{split}",
        # the split's images curated at Inception's input size, so that clean-fid only scales the 1024 px
        # samples down (`lumos.eval.fid.check_comparable`)
        reference=lambda wc: f"results/eval/fid/reference_{wc.split}_{INCEPTION_SIZE}px.npz",
        components=FID_NETS,
    output:
        "results/eval/t2i/released_t2i/fid_{split}_short.json",
    params:
        cfg=FID_CFG,
    threads: 1
    resources:
        **rule_resources("fid"),
    log:
        "results/logs/fid/released_t2i_{split}.log",
    benchmark:
        "results/benchmarks/fid/released_t2i_{split}.tsv"
    conda:
        "../envs/lumos.yaml"
    shell:
        "lumos fid --threads {threads} --cfg {params.cfg:q} --run released_t2i --split {wildcards.split}"
        " --samples {input.samples} --reference {input.reference} --out {output} > {log} 2>&1"


# The diffusers pipeline of the released model (T5 v1.1 XXL, the VAE, a DPM-Solver++ scheduler):
# the official evaluators' images and the paper-prompt figure come from it.
rule released_t2i_pipeline:
    input:
        model="results/released/t2i/model",
        components=trained("vae"),
    output:
        directory("results/released/t2i/pipeline"),
    params:
        cfg=cfg_json("components.vae", "components.t5_released", "released.t2i_sample.sampler"),
    resources:
        **rule_resources("text_features"),  # loads the 4.7B T5 like a text-feature job
    log:
        "results/logs/released/t2i_pipeline.log",
    benchmark:
        "results/benchmarks/released/t2i_pipeline.tsv"
    conda:
        "../envs/lumos.yaml"
    shell:
        "lumos export-pipeline --cfg {params.cfg:q} --encoder t5_released --sample-key released.t2i_sample"
        " --model {input.model} --out {output} > {log} 2>&1"


rule released_t2i_grid:
    input:
        "results/released/t2i/pipeline",
    output:
        report(
            "results/released_t2i_samples.png",
            caption="../docs/report/released_t2i_samples.rst",
            category="T2I (Section 4.2.1)",
        ),
    params:
        cfg=cfg_json("released.t2i_sample"),
    threads: 1
    resources:
        **rule_resources("t2i_sample"),
    log:
        "results/logs/report/released_t2i_grid.log",
    benchmark:
        "results/benchmarks/report/released_t2i_grid.tsv"
    conda:
        "../envs/lumos.yaml"
    shell:
        "lumos t2i-grid --threads {threads} --cfg {params.cfg:q} --sample-key released.t2i_sample --pipeline {input}"
        " --prompts paper --images-per-prompt 1 --columns 6 --tile-size 512 --out {output} > {log} 2>&1"
