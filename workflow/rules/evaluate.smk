# Stage 5: predict every target test volume, map back to the scan grid, Dice/ASSD + provenance.
rule evaluate:
    input:
        model="results/models/{dataset}/{exp}/seed{seed}/model.pt",
        target=lambda w: cache_dir(EXPERIMENTS[w.exp]["target"]),
    output:
        metrics=report("results/evaluation/{dataset}/{exp}/seed{seed}/metrics.json", caption="../report/seed_metrics.rst", category="Evaluation", subcategory="{exp}"),
        overlay="results/evaluation/{dataset}/{exp}/seed{seed}/overlay.npz",
        predictions=report(
            directory("results/evaluation/{dataset}/{exp}/seed{seed}/predictions"),
            patterns=["{case}_pred.nii.gz"],
            caption="../report/predictions.rst",
            category="Evaluation",
            subcategory="{exp}",
        ),
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
        gpu=int(config.get("evaluation", {}).get("gpu", False)),
        mem_mb=4000,
        runtime=30,
    conda:
        ENV
    shell:
        "OMP_NUM_THREADS={threads} xmodseg evaluate --registry {params.registry:q} --dataset {wildcards.dataset:q} "
        "--model {input.model:q} --target-cache {input.target:q} --predictions {output.predictions:q} "
        "--metrics {output.metrics:q} --experiment {params.experiment} --batch-size {params.batch_size:q} --gpu {resources.gpu:q} > {log:q} 2>&1"
