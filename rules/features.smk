# Features: VAE latents and encoder tokens, extracted once per split and reused by every run.


rule features:
    input:
        data="results/data/{split}",
        components=trained("vae", "dino", "moco"),
    output:
        directory("results/features/{split}"),
    params:
        cfg=lambda wc: as_json(
            components=config["components"],
            encoders=sorted({r["encoder"] for r in config["pretrain"]["runs"].values() if r.get("encoder")}),
            features=config["features"],
        ),
    threads: 1
    resources:
        **rule_resources("features"),
    log:
        "results/logs/features/{split}.log",
    conda:
        "../envs/lumos.yaml"
    shell:
        "lumos features --threads {threads} --cfg {params.cfg:q} --data {input.data}"
        " --out {output} > {log} 2>&1"
