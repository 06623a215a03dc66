# Evaluation: sample one image per eval image, then FID against the split's statistics.
# `sample.jobs` parallel jobs (GPU jobs on a cluster) each make every jobs-th batch; a local
# gather joins their folders.
from lumos.workflow.jobs import i2i_samples, sample_jobs, t2i_samples  # noqa: E402
from lumos.workflow.names import FINETUNE_WILDCARD, parse_run, run_args, snapshot_name, trained_run  # noqa: E402
from lumos.workflow.splits import run_features, t2i_text  # noqa: E402

EVAL_SPLITS = config["eval"]["splits"]
# The settings FID steps read: the feature network (its own settings when it is
# `components.fid_net`, the weights file when it is Inception) and the batch size; and the network
# the DAG trains, if any.
_fid_net = ["components.fid_net"] if config["eval"]["fid_extractor"] == "fid_net" else ["eval.inception"]
FID_CFG = cfg_json("eval.fid_extractor", "eval.batch_size", *_fid_net)
FID_NETS = trained("fid_net") if config["eval"]["fid_extractor"] == "fid_net" else []


localrules:
    gather_samples,
    gather_t2i_samples,


rule sample:
    input:
        # the evaluation split's features, the conditions sampled from
        features=lambda wc: f"results/features/{run_features(config, wc.run, wc.split)}",
        # the trained model: none for the untrained ceiling, the imported release for `released_i2i`,
        # the snapshots of a `_step<N>` run
        model=lambda wc: (
            "results/released/i2i/model"
            if wc.run == "released_i2i"
            else (
                []
                if wc.run == "untrained"
                else f"results/pretrain/{trained_run(wc.run)}/{'snapshots' if parse_run(wc.run)['step'] else 'model'}"
            )
        ),
        components=trained("vae"),
    output:
        temp(directory("results/samples/{run}/{split}.part{part}")),
    params:
        cfg=lambda wc: cfg_json(
            f"pretrain.runs.{parse_run(wc.run)['base']}", "pretrain.model", "components.vae", "sample"
        ),
        run=lambda wc: run_args(wc.run, sampling=True),
        n=lambda wc: i2i_samples(config, wc.run, wc.split),
        # the model folder, a `_step<N>` run's snapshot in it, or none
        model=lambda wc, input: (
            f"{input.model}/{snapshot_name(parse_run(wc.run)['step'])}"
            if parse_run(wc.run)["step"]
            else (input.model or "none")
        ),
        work="results/state/samples/{run}/{split}.part{part}",
        parts=lambda wc: sample_jobs(config, i2i_samples(config, wc.run, wc.split)),
    threads: 1
    resources:
        **rule_resources("sample"),
    log:
        "results/logs/sample/{run}_{split}.part{part}.log",
    benchmark:
        "results/benchmarks/sample/{run}_{split}.part{part}.tsv"
    conda:
        "../envs/lumos.yaml"
    shell:
        "lumos sample --threads {threads} --cfg {params.cfg:q} {params.run} --n-samples {params.n}"
        " --features {input.features} --model {params.model} --out {output}"
        " --part {wildcards.part} --parts {params.parts} --work {params.work} > {log} 2>&1"


rule gather_samples:
    input:
        lambda wc: parts(
            f"results/samples/{wc.run}/{wc.split}", sample_jobs(config, i2i_samples(config, wc.run, wc.split))
        ),
    output:
        directory("results/samples/{run}/{split}"),
    log:
        "results/logs/sample/{run}_{split}.gather.log",
    conda:
        "../envs/lumos.yaml"
    shell:
        "lumos gather --kind samples --parts {input} --out {output} > {log} 2>&1"


rule fid_reference:
    input:
        data="results/data/{split}",
        components=FID_NETS,
    output:
        "results/eval/fid/reference_{split}.npz",
    params:
        cfg=FID_CFG,
    threads: 1
    resources:
        **rule_resources("fid_reference"),
    log:
        "results/logs/fid/reference_{split}.log",
    benchmark:
        "results/benchmarks/fid/reference_{split}.tsv"
    conda:
        "../envs/lumos.yaml"
    shell:
        "lumos fid-reference --threads {threads} --cfg {params.cfg:q} --data {input.data}"
        " --out {output} > {log} 2>&1"


rule fid:
    input:
        samples="results/samples/{run}/{split}",
        reference="results/eval/fid/reference_{split}.npz",
        components=FID_NETS,
    output:
        "results/eval/fid/{run}_{split}.json",
    params:
        cfg=FID_CFG,
    threads: 1
    resources:
        **rule_resources("fid"),
    log:
        "results/logs/fid/{run}_{split}.log",
    benchmark:
        "results/benchmarks/fid/{run}_{split}.tsv"
    conda:
        "../envs/lumos.yaml"
    shell:
        "lumos fid --threads {threads} --cfg {params.cfg:q} --run {wildcards.run}"
        " --split {wildcards.split} --samples {input.samples} --reference {input.reference}"
        " --out {output} > {log} 2>&1"


rule fid_real:
    input:
        data="results/data/{split}_ref",
        reference="results/eval/fid/reference_{split}.npz",
        components=FID_NETS,
    output:
        "results/eval/fid/real_{split}.json",
    params:
        cfg=FID_CFG,
    threads: 1
    resources:
        **rule_resources("fid_real"),
    log:
        "results/logs/fid/real_{split}.log",
    benchmark:
        "results/benchmarks/fid/real_{split}.tsv"
    conda:
        "../envs/lumos.yaml"
    shell:
        "lumos fid --threads {threads} --cfg {params.cfg:q} --run real --split {wildcards.split}"
        " --data {input.data} --reference {input.reference} --out {output} > {log} 2>&1"


# T2I evaluation: FID and CLIP score from eval-split captions (final weights or a snapshot),
# and the GenEval / DPG-Bench analogues.


rule t2i_sample:
    input:
        # final EMA weights or the snapshots folder; none for the untrained sanity row
        model=lambda wc: (
            [] if wc.ft == "untrained" else f"results/t2i/{wc.ft}/{'model' if wc.ckpt == 'final' else 'snapshots'}"
        ),
        features="results/features/{split}",
        text="results/features/{split}_text",
        components=trained("vae"),
    output:
        temp(directory("results/samples/t2i/{ft}/{ckpt}/{split}_{captions}.part{part}")),
    params:
        cfg=cfg_json("pretrain.model", "components.vae", "sample"),
        text=lambda wc: t2i_text(config, wc.ft),
        n=lambda wc: t2i_samples(config, wc.split, wc.ckpt),
        model=lambda wc, input: (
            "none" if wc.ft == "untrained" else input.model if wc.ckpt == "final" else f"{input.model}/{wc.ckpt}"
        ),
        work="results/state/samples/t2i/{ft}/{ckpt}/{split}_{captions}.part{part}",
        parts=lambda wc: sample_jobs(config, t2i_samples(config, wc.split, wc.ckpt)),
    threads: 1
    resources:
        **rule_resources("t2i_sample"),
    log:
        "results/logs/sample/t2i_{ft}_{ckpt}_{split}_{captions}.part{part}.log",
    benchmark:
        "results/benchmarks/sample/t2i_{ft}_{ckpt}_{split}_{captions}.part{part}.tsv"
    conda:
        "../envs/lumos.yaml"
    shell:
        "lumos t2i-sample --threads {threads} --cfg {params.cfg:q} --model {params.model}"
        " --encoder {params.text} --n-samples {params.n}"
        " --features {input.features} --text {input.text} --captions {wildcards.captions}"
        " --part {wildcards.part} --parts {params.parts} --out {output} --work {params.work} > {log} 2>&1"


rule gather_t2i_samples:
    input:
        lambda wc: parts(
            f"results/samples/t2i/{wc.ft}/{wc.ckpt}/{wc.split}_{wc.captions}",
            sample_jobs(config, t2i_samples(config, wc.split, wc.ckpt)),
        ),
    output:
        directory("results/samples/t2i/{ft}/{ckpt}/{split}_{captions}"),
    log:
        "results/logs/sample/t2i_{ft}_{ckpt}_{split}_{captions}.gather.log",
    conda:
        "../envs/lumos.yaml"
    shell:
        "lumos gather --kind samples --parts {input} --out {output} > {log} 2>&1"


rule t2i_fid:
    input:
        samples="results/samples/t2i/{ft}/{ckpt}/{split}_{captions}",
        reference="results/eval/fid/reference_{split}.npz",
        components=FID_NETS,
    output:
        "results/eval/t2i/{ft}/{ckpt}/fid_{split}_{captions}.json",
    params:
        cfg=FID_CFG,
    threads: 1
    resources:
        **rule_resources("fid"),
    log:
        "results/logs/fid/t2i_{ft}_{ckpt}_{split}_{captions}.log",
    benchmark:
        "results/benchmarks/fid/t2i_{ft}_{ckpt}_{split}_{captions}.tsv"
    conda:
        "../envs/lumos.yaml"
    shell:
        "lumos fid --threads {threads} --cfg {params.cfg:q} --run {wildcards.ft} --split {wildcards.split}"
        " --samples {input.samples} --reference {input.reference} --out {output} > {log} 2>&1"


rule clip_score:
    input:
        samples="results/samples/t2i/{ft}/{ckpt}/{split}_{captions}",
        data="results/data/{split}",
        components=trained(config["t2i"]["eval"]["clip_scorer"]),
    output:
        "results/eval/t2i/{ft}/{ckpt}/clip_{split}_{captions}.json",
    params:
        cfg=cfg_json(f"components.{config['t2i']['eval']['clip_scorer']}"),
        scorer=config["t2i"]["eval"]["clip_scorer"],
    threads: 1
    resources:
        **rule_resources("clip_score"),
    log:
        "results/logs/eval/clip_{ft}_{ckpt}_{split}_{captions}.log",
    benchmark:
        "results/benchmarks/eval/clip_{ft}_{ckpt}_{split}_{captions}.tsv"
    conda:
        "../envs/lumos.yaml"
    shell:
        "lumos clip-score --threads {threads} --cfg {params.cfg:q} --scorer {params.scorer} --samples {input.samples}"
        " --data {input.data} --captions {wildcards.captions} --out {output} > {log} 2>&1"


rule t2i_bench:
    input:
        model=lambda wc: [] if wc.ft == "untrained" else f"results/t2i/{wc.ft}/model",
        features="results/features/pairs",
        components=lambda wc: trained("vae", t2i_text(config, wc.ft)),
    output:
        directory("results/eval/t2i/{ft}/{bench}"),
    params:
        cfg=lambda wc: cfg_json(
            f"t2i.eval.{wc.bench}",
            "data.image_size",
            f"components.{t2i_text(config, wc.ft)}",
            "pretrain.model",
            "components.vae",
            "sample",
        ),
        text=lambda wc: t2i_text(config, wc.ft),
        model=lambda wc, input: input.model or "none",
        work="results/state/bench/{ft}/{bench}",
    threads: 1
    resources:
        **rule_resources("t2i_bench"),
    log:
        "results/logs/eval/{bench}_{ft}.log",
    benchmark:
        "results/benchmarks/eval/{bench}_{ft}.tsv"
    conda:
        "../envs/lumos.yaml"
    shell:
        "lumos t2i-bench --threads {threads} --cfg {params.cfg:q} --bench {wildcards.bench}"
        " --encoder {params.text} --model {params.model} --features {input.features} --out {output} --work {params.work} > {log} 2>&1"


rule bench_ground_truth:
    output:
        directory("results/eval/t2i/ground_truth/{bench}"),
    params:
        cfg=lambda wc: cfg_json(f"t2i.eval.{wc.bench}", "data.image_size"),
    log:
        "results/logs/eval/{bench}_ground_truth.log",
    benchmark:
        "results/benchmarks/eval/{bench}_ground_truth.tsv"
    conda:
        "../envs/lumos.yaml"
    shell:
        "lumos t2i-bench --cfg {params.cfg:q} --bench {wildcards.bench} --model ground_truth"
        " --out {output} > {log} 2>&1"


# Paper preset: the official GenEval and DPG-Bench evaluators, each in its own conda env
# (envs/geneval.yaml, envs/dpg_bench.yaml; created by `--sdm conda`, not installed by default).
# They score results/t2i/<ft>/pipeline, the stage-1 (256 px) model that Table 2 also reports, and
# with config released.t2i the released T2I model (`released_t2i`, sampled with its own settings,
# released.t2i_sample: rules/released.smk).
OFFICIAL = config["t2i"]["eval"].get("official", {})  # paper: the official GenEval / DPG-Bench
OFFICIAL_FT = f"{FINETUNE_WILDCARD}|released_t2i"  # their `{ft}`: our fine-tunes and the released T2I model
# `accelerate launch` flags of dpg_official, as DPG-Bench's dist_eval.sh passes them (fp16; one
# process per GPU of the official_eval job, on one node)
_processes = max(1, rule_request("official_eval").get("gpus_per_node", 0))
OFFICIAL_LAUNCH = (
    f"--num_machines 1 --num_processes {_processes}{' --multi_gpu' if _processes > 1 else ''} --mixed_precision fp16"
)


rule official_images:
    input:
        # the exported pipeline whose images are scored: a fine-tune's, or the imported released T2I
        # model's (`released_t2i`)
        lambda wc: "results/released/t2i/pipeline" if wc.ft == "released_t2i" else f"results/t2i/{wc.ft}/pipeline",
    output:
        images=directory("results/eval/t2i/{ft}/{bench}_official/images"),
        resolution="results/eval/t2i/{ft}/{bench}_official/resolution.txt",
    wildcard_constraints:
        ft=OFFICIAL_FT,
    params:
        # the released model is sampled with its official sampler at 1024 px (`released.t2i_sample`)
        cfg=lambda wc: cfg_json(
            "released.t2i_sample" if wc.ft == "released_t2i" else "sample",
            f"t2i.eval.official.{'geneval' if wc.bench == 'geneval' else 'dpg'}_repo",
            "t2i.eval.geneval.images_per_prompt",
        ),
        sample_key=lambda wc: "released.t2i_sample" if wc.ft == "released_t2i" else "sample",
    threads: 1
    resources:
        **rule_resources("t2i_bench"),
    log:
        "results/logs/eval/{bench}_official_images_{ft}.log",
    benchmark:
        "results/benchmarks/eval/{bench}_official_images_{ft}.tsv"
    conda:
        "../envs/lumos.yaml"
    shell:
        "lumos official-images --threads {threads} --cfg {params.cfg:q} --bench {wildcards.bench}"
        " --sample-key {params.sample_key} --pipeline {input} --out {output.images}"
        " --out-resolution {output.resolution} > {log} 2>&1"


rule geneval_official:
    input:
        "results/eval/t2i/{ft}/geneval_official/images",
    output:
        "results/eval/t2i/{ft}/geneval_official/results.jsonl",
    wildcard_constraints:
        ft=OFFICIAL_FT,
    params:
        repo=OFFICIAL.get("geneval_repo", ""),
        detector=OFFICIAL.get("geneval_detector", ""),
        # the PyPI mmdet wheel keeps the Mask2Former config in mmdet/.mim/configs, where
        # evaluate_images.py does not look: found here, with the weights checked, and passed explicitly
        find_config=os.path.join(workflow.basedir, "lumos", "eval", "mmdet_config.py"),
    resources:
        **rule_resources("official_eval"),
    log:
        "results/logs/eval/geneval_official_{ft}.log",
    benchmark:
        "results/benchmarks/eval/geneval_official_{ft}.tsv"
    conda:
        "../envs/geneval.yaml"
    shell:
        "(config=$(python {params.find_config:q} --weights {params.detector:q})"
        " && python {params.repo}/evaluation/evaluate_images.py {input} --outfile {output}"
        ' --model-config "$config" --model-path {params.detector:q}) > {log} 2>&1'


rule dpg_official:
    input:
        images="results/eval/t2i/{ft}/dpg_official/images",
        resolution="results/eval/t2i/{ft}/dpg_official/resolution.txt",
    output:
        report="results/eval/t2i/{ft}/dpg_official/report.txt",
        detail="results/eval/t2i/{ft}/dpg_official/report_detail.txt",  # the script's question-level log
    wildcard_constraints:
        ft=OFFICIAL_FT,
    params:
        repo=OFFICIAL.get("dpg_repo", ""),
        launch=OFFICIAL_LAUNCH,
    resources:
        **rule_resources("official_eval"),
    log:
        "results/logs/eval/dpg_official_{ft}.log",
    benchmark:
        "results/benchmarks/eval/dpg_official_{ft}.tsv"
    conda:
        "../envs/dpg_bench.yaml"
    shell:
        # --resolution: the side of one grid tile, as official_images measured it on the written images
        "accelerate launch {params.launch} {params.repo}/dpg_bench/compute_dpg_bench.py"
        " --image-root-path {input.images} --resolution $(cat {input.resolution}) --pic-num 4"
        " --res-path {output.report} --csv {params.repo}/dpg_bench/dpg_bench.csv --vqa-model mplug > {log} 2>&1"


rule official_scores:
    input:
        lambda wc: f"results/eval/t2i/{wc.ft}/{wc.bench}_official/"
        + ("results.jsonl" if wc.bench == "geneval" else "report.txt"),
    output:
        "results/eval/t2i/{ft}/{bench}_official/scores.json",
    wildcard_constraints:
        ft=OFFICIAL_FT,
    params:
        repo=lambda wc: OFFICIAL.get("geneval_repo" if wc.bench == "geneval" else "dpg_repo", ""),
        per_prompt=config["t2i"]["eval"]["geneval"]["images_per_prompt"],
    log:
        "results/logs/eval/{bench}_official_scores_{ft}.log",
    conda:
        "../envs/lumos.yaml"
    shell:
        "lumos official-scores --bench {wildcards.bench} --repo {params.repo:q} --images-per-prompt {params.per_prompt}"
        " --results {input} --out {output} > {log} 2>&1"
