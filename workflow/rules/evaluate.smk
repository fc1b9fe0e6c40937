# Stage 5: predict every target test volume, map back to the scan grid, Dice/ASSD + provenance.
rule evaluate:
    input:
        unpack(lambda w: R.evaluate_inputs(CFG, w.exp, int(w.seed))),
    output:
        metrics=report(P["seed_metrics"], caption="../report/seed_metrics.rst", category="Evaluation", subcategory="{exp}"),
        overlay=P["overlay"],
        predictions=report(
            directory(P["predictions"]),
            patterns=["{case}_pred.nii.gz"],
            caption="../report/predictions.rst",
            category="Evaluation",
            subcategory="{exp}",
        ),
    params:
        registry=CFG.registry,
        experiment=lambda w: as_arg(R.experiment_record(CFG, w.exp, int(w.seed))),
        batch_size=CFG.evaluation.get("batch_size", 32),
        gpu_slots=gpu_slots,
    log:
        log_path("evaluate"),
    benchmark:
        benchmark_path("evaluate")
    threads: 1  # two 1-thread jobs side by side beat one 2-thread job on CPU (SIFA: 1.58x from 2 threads); --set-threads to change
    resources:
        gpu=int(CFG.evaluation.get("gpu", False)),
        mem_mb=4000,
        runtime=30,
    conda:
        ENV
    shell:
        "OMP_NUM_THREADS={threads} xmodseg evaluate --registry {params.registry:q} --dataset {wildcards.dataset:q} "
        "--model {input.model:q} --target-cache {input.target:q} --predictions {output.predictions:q} "
        "--metrics {output.metrics:q} --overlay {output.overlay:q} --experiment {params.experiment} --batch-size {params.batch_size:q} "
        "--gpu {resources.gpu:q} --gpu-slots {params.gpu_slots:q} > {log:q} 2>&1"
