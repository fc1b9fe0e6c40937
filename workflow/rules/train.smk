# Stage 4: train one experiment (method x direction x seed) on the shared training loop.
# Checkpoints live outside the declared outputs so a rerun resumes instead of restarting.
rule train:
    input:
        unpack(experiment_inputs),
    output:
        model="results/models/{dataset}/{exp}/seed{seed}/model.pt",
        sidecar=report("results/models/{dataset}/{exp}/seed{seed}/model.json", caption="../report/model_sidecar.rst", category="Models", subcategory="{exp}"),
    params:
        method=lambda w: EXPERIMENTS[w.exp]["method"],
        train=lambda w: as_arg(EXPERIMENTS[w.exp]["train"]),
        checkpoints="results/checkpoints/{dataset}/{exp}/seed{seed}",
        warm_start=warm_start_arg,
    log:
        run="logs/train/{dataset}/{exp}/seed{seed}.log",
        losses="logs/train/{dataset}/{exp}/seed{seed}.jsonl",
    benchmark:
        "results/benchmarks/train/{dataset}/{exp}/seed{seed}.tsv"
    priority: train_priority
    threads: 2
    resources:
        gpu=1,
        mem_mb=6000,
        runtime=120,
    conda:
        ENV
    shell:
        "OMP_NUM_THREADS={threads} xmodseg train --method {params.method:q} --params {params.train} --seed {wildcards.seed:q} "
        "--source-cache {input.source:q} --target-cache {input.target:q} --model {output.model:q} "
        "--checkpoint-dir {params.checkpoints:q} --train-log {log.losses:q} {params.warm_start} > {log.run:q} 2>&1"
