# Evaluation: sample one image per eval image, then FID against the split's statistics.


rule sample:
    input:
        features="results/features/{split}",
        model=sample_model,
        components=trained("vae"),
    output:
        directory("results/samples/{run}/{split}"),
    params:
        cfg=lambda wc: as_json(
            run=run_config(wc.run),
            model=config["pretrain"]["model"],
            vae=config["components"]["vae"],
            sample=config["sample"],
            n_samples=config["data"]["splits"][wc.split]["n"],
        ),
        model=lambda wc, input: input.model or "none",
        work="results/state/samples/{run}/{split}",
    threads: 1
    resources:
        **rule_resources("sample"),
    log:
        "results/logs/sample/{run}_{split}.log",
    conda:
        "../envs/lumos.yaml"
    shell:
        "lumos sample --threads {threads} --cfg {params.cfg:q} --run {wildcards.run}"
        " --features {input.features} --model {params.model} --out {output}"
        " --work {params.work} > {log} 2>&1"


rule fid_reference:
    input:
        data="results/data/{split}",
        components=fid_inputs(),
    output:
        "results/eval/fid/reference_{split}.npz",
    params:
        cfg=lambda wc: as_json(**fid_config()),
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
        cfg=lambda wc: as_json(**fid_config()),
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
        cfg=lambda wc: as_json(**fid_config()),
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
