# Evaluation: sample one image per eval image, then FID against the split's statistics.
# `sample.jobs` parallel jobs (GPU jobs on a cluster) each make every jobs-th batch; a local
# gather joins their folders.


localrules:
    gather_samples,
    gather_t2i_samples,


rule sample:
    input:
        features=sample_features,
        model=sample_model,
        components=trained("vae"),
    output:
        temp(directory("results/samples/{run}/{split}.part{part}")),
    params:
        cfg=lambda wc: cfg_json(run_key(wc.run), "pretrain.model", "components.vae", "sample"),
        run=lambda wc: run_args(wc.run, sampling=True),
        n=sample_count,
        model=sample_model_path,
        work="results/state/samples/{run}/{split}.part{part}",
        parts=lambda wc: sample_jobs(sample_count(wc)),
    threads: 1
    resources:
        **rule_resources("sample"),
    log:
        "results/logs/sample/{run}_{split}.part{part}.log",
    conda:
        "../envs/lumos.yaml"
    shell:
        "lumos sample --threads {threads} --cfg {params.cfg:q} {params.run} --n-samples {params.n}"
        " --features {input.features} --model {params.model} --out {output}"
        " --part {wildcards.part} --parts {params.parts} --work {params.work} > {log} 2>&1"


rule gather_samples:
    input:
        lambda wc: parts(f"results/samples/{wc.run}/{wc.split}", sample_jobs(sample_count(wc))),
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
        components=fid_inputs(),
    output:
        "results/eval/fid/reference_{split}.npz",
    params:
        cfg=fid_cfg(),
    threads: 1
    resources:
        **rule_resources("fid_reference"),
    log:
        "results/logs/fid/reference_{split}.log",
    conda:
        "../envs/lumos.yaml"
    shell:
        "lumos fid-reference --threads {threads} --cfg {params.cfg:q} --data {input.data}"
        " --out {output} > {log} 2>&1"


rule fid:
    input:
        samples="results/samples/{run}/{split}",
        reference="results/eval/fid/reference_{split}.npz",
        components=fid_inputs(),
    output:
        "results/eval/fid/{run}_{split}.json",
    params:
        cfg=fid_cfg(),
    threads: 1
    resources:
        **rule_resources("fid"),
    log:
        "results/logs/fid/{run}_{split}.log",
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
        components=fid_inputs(),
    output:
        "results/eval/fid/real_{split}.json",
    params:
        cfg=fid_cfg(),
    threads: 1
    resources:
        **rule_resources("fid_real"),
    log:
        "results/logs/fid/real_{split}.log",
    conda:
        "../envs/lumos.yaml"
    shell:
        "lumos fid --threads {threads} --cfg {params.cfg:q} --run real --split {wildcards.split}"
        " --data {input.data} --reference {input.reference} --out {output} > {log} 2>&1"


# T2I evaluation: FID and CLIP score from eval-split captions (final weights or a snapshot),
# and the GenEval / DPG-Bench analogues.


rule t2i_sample:
    input:
        model=ft_model,
        features="results/features/{split}",
        text="results/features/{split}_text",
        components=trained("vae"),
    output:
        temp(directory("results/samples/t2i/{ft}/{ckpt}/{split}_{captions}.part{part}")),
    params:
        cfg=cfg_json("pretrain.model", "components.vae", "sample"),
        text=t2i_text,
        n=t2i_samples,
        model=ft_model_path,
        work="results/state/samples/t2i/{ft}/{ckpt}/{split}_{captions}.part{part}",
        parts=lambda wc: sample_jobs(t2i_samples(wc)),
    threads: 1
    resources:
        **rule_resources("t2i_sample"),
    log:
        "results/logs/sample/t2i_{ft}_{ckpt}_{split}_{captions}.part{part}.log",
    conda:
        "../envs/lumos.yaml"
    shell:
        "lumos t2i-sample --threads {threads} --cfg {params.cfg:q} --model {params.model}"
        " --encoder {params.text} --n-samples {params.n}"
        " --features {input.features} --text {input.text} --captions {wildcards.captions}"
        " --part {wildcards.part} --parts {params.parts} --out {output} --work {params.work} > {log} 2>&1"


rule gather_t2i_samples:
    input:
        lambda wc: parts(f"results/samples/t2i/{wc.ft}/{wc.ckpt}/{wc.split}_{wc.captions}", sample_jobs(t2i_samples(wc))),
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
        components=fid_inputs(),
    output:
        "results/eval/t2i/{ft}/{ckpt}/fid_{split}_{captions}.json",
    params:
        cfg=fid_cfg(),
    threads: 1
    resources:
        **rule_resources("fid"),
    log:
        "results/logs/fid/t2i_{ft}_{ckpt}_{split}_{captions}.log",
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
    conda:
        "../envs/lumos.yaml"
    shell:
        "lumos clip-score --threads {threads} --cfg {params.cfg:q} --scorer {params.scorer} --samples {input.samples}"
        " --data {input.data} --captions {wildcards.captions} --out {output} > {log} 2>&1"


rule t2i_bench:
    input:
        model=lambda wc: [] if wc.ft == "untrained" else f"results/t2i/{wc.ft}/model",
        features="results/features/pairs",
        components=lambda wc: trained("vae", t2i_text(wc)),
    output:
        directory("results/eval/t2i/{ft}/{bench}"),
    params:
        cfg=lambda wc: cfg_json(
            f"t2i.eval.{wc.bench}",
            "data.image_size",
            f"components.{t2i_text(wc)}",
            "pretrain.model",
            "components.vae",
            "sample",
        ),
        text=t2i_text,
        model=lambda wc, input: input.model or "none",
        work="results/state/bench/{ft}/{bench}",
    threads: 1
    resources:
        **rule_resources("t2i_bench"),
    log:
        "results/logs/eval/{bench}_{ft}.log",
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


rule official_images:
    input:
        official_pipeline,
    output:
        images=directory("results/eval/t2i/{ft}/{bench}_official/images"),
        resolution="results/eval/t2i/{ft}/{bench}_official/resolution.txt",
    wildcard_constraints:
        ft=OFFICIAL_FT,
    params:
        cfg=lambda wc: cfg_json(sample_key(wc.ft), official_repo_key(wc.bench), "t2i.eval.geneval.images_per_prompt"),
        sample_key=lambda wc: sample_key(wc.ft),
    threads: 1
    resources:
        **rule_resources("t2i_bench"),
    log:
        "results/logs/eval/{bench}_official_images_{ft}.log",
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
    conda:
        "../envs/geneval.yaml"
    shell:
        "(config=$(python {params.find_config:q} --weights {params.detector:q})"
        " && python {params.repo}/evaluation/evaluate_images.py {input} --outfile {output}"
        " --model-config \"$config\" --model-path {params.detector:q}) > {log} 2>&1"


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
        launch=official_launch_flags(),
    resources:
        **rule_resources("official_eval"),
    log:
        "results/logs/eval/dpg_official_{ft}.log",
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
