# lumos: reproducing "Learning Visual Generative Priors without Text" as a Snakemake workflow.
#
#   snakemake results/table1.csv                                   # tiny preset, local CPU
#   snakemake results/table1.csv --configfile config/smoke.yaml    # smoke preset (CI)
#   snakemake results/table1.csv --configfile config/paper.yaml    # paper scale
#   snakemake results/table2.csv results/table3.csv                # T2I from the I2I prior
#
# The pipeline reads top to bottom: data -> components -> features -> pretrain -> finetune ->
# evaluate -> report.


report: "docs/report/workflow.rst"


include: "rules/common.smk"
include: "rules/data.smk"
include: "rules/components.smk"
include: "rules/features.smk"
include: "rules/pretrain.smk"
include: "rules/finetune.smk"
include: "rules/nvs.smk"
include: "rules/i2v.smk"
include: "rules/evaluate.smk"
include: "rules/released.smk"
include: "rules/report.smk"
include: "rules/ablations.smk"


rule all:
    input:
        "results/table1.csv",
        "results/table2.csv",
        "results/table3.csv",
        expand("results/{fig}.png", fig=["fig2a", "figS1", "fig2b", "fig8", "fig11"]),
        "results/figS7.png",
        "results/fig12.png",
        "results/table4.csv",
        "results/fig5.png",
        "results/fig7.png",
        "results/table5.csv",
        "results/fig2d.png",
        "results/figS8.png",
        # beyond the paper: I2I FID of Lumos-I2I, RCG, REPA and REG against pretraining steps, and their T2I transfer
        *(["results/figG1.png"] if "figG1" in config["pretrain"]["figures"] else []),
        LGM_TARGETS,  # nvs.lgm set (paper preset only): LGM's Gaussians from the generated views
        expand("results/t2i/{ft}/stage{stage}/model", ft=T2I_MAIN, stage=sorted(STAGES)),
        # the main models as diffusers pipelines with model cards (docs/pipelines.md; T2I's: t2i_samples)
        "results/pretrain/lumos_i2i/pipeline",
        f"results/nvs/{NVS_MAIN}/pipeline",
        f"results/i2v/{I2V_MAIN}/pipeline",
        "results/benchmarks.csv",  # per-job wall time and memory (rules/report.smk), made last


read_signatures_once()  # after every rule (rules/common.smk): faster planning
format_shell_commands_once()  # likewise
