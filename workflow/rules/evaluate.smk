# Stage 5: predict every target test volume, map back to the scan grid, Dice/ASSD + provenance.
rule evaluate:
    input:
        model="results/models/{dataset}/{exp}/seed{seed}/model.pt",
        target=lambda w: cache_dir(EXPERIMENTS[w.exp]["target"]),
    output:
        metrics="results/evaluation/{dataset}/{exp}/seed{seed}/metrics.json",
        overlay="results/evaluation/{dataset}/{exp}/seed{seed}/overlay.npz",
        predictions=directory("results/evaluation/{dataset}/{exp}/seed{seed}/predictions"),
    params:
        registry=config["registry"],
        experiment=experiment_record,
        batch_size=config.get("evaluation", {}).get("batch_size", 32),
    log:
        "logs/evaluate/{dataset}/{exp}/seed{seed}.log",
    benchmark:
        "results/benchmarks/evaluate/{dataset}/{exp}/seed{seed}.tsv"
    threads: 2
    resources:
        mem_mb=4000,
    conda:
        ENV
    shell:
        "OMP_NUM_THREADS={threads} xmodseg evaluate --registry {params.registry} --dataset {wildcards.dataset} "
        "--model {input.model} --target-cache {input.target} --predictions {output.predictions} "
        "--metrics {output.metrics} --experiment {params.experiment} --batch-size {params.batch_size} > {log} 2>&1"
