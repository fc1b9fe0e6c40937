# Stage 4: train one experiment (method x direction x seed) on the shared training loop.
# Checkpoints live outside the declared outputs so a rerun resumes instead of restarting.
# Inputs: the caches and every artifact the method declares (`inputs:`), from the resolver.
rule train:
    input:
        unpack(train_inputs),
    output:
        model=P["model"],
        sidecar=report(P["sidecar"], caption="../report/model_sidecar.rst", category="Models", subcategory="{exp}"),
    params:
        method=lambda w: CFG.experiments[w.exp].method,
        train=lambda w: as_arg(CFG.experiments[w.exp].train),
        labels=lambda w: as_arg(CFG.experiments[w.exp].labels.as_arg()),
        checkpoints=P["checkpoints"],
        inputs=train_args,
        gpu_slots=gpu_slots,
    log:
        run=log_path("train"),
        losses=log_path("train", ".jsonl"),
    benchmark:
        benchmark_path("train")
    priority: lambda w: R.train_priority(CFG, w.exp)
    threads: 1  # two 1-thread jobs side by side beat one 2-thread job on CPU (SIFA: 1.58x from 2 threads); --set-threads to change
    resources:
        gpu=1,
        mem_mb=6000,
        runtime=120,
    conda:
        ENV
    shell:
        "OMP_NUM_THREADS={threads} xmodseg train --method {params.method:q} --params {params.train} --seed {wildcards.seed:q} "
        "--source-cache {input.source:q} --target-cache {input.target:q} --model {output.model:q} "
        "--checkpoint-dir {params.checkpoints:q} --train-log {log.losses:q} {params.inputs} --labels {params.labels} "
        "--gpu-slots {params.gpu_slots:q} > {log.run:q} 2>&1"
