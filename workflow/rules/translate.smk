# Stage 3: unpaired image translation (source -> target) per translator entry and seed. Its
# translated cache and its model are what experiments consume (`translator:`, declared `inputs:`);
# changing a downstream experiment never retrains the translator.
rule translate:
    input:
        unpack(lambda w: R.translator_inputs(CFG, w.tname)),
    output:
        model=P["translator_model"],
        sidecar=report(P["translator_sidecar"], caption="../report/translator_record.rst", category="Translation", subcategory="{tname}"),
        quality=report(P["translator_quality"], caption="../report/translator_record.rst", category="Translation", subcategory="{tname}"),
        preview=report(P["translator_preview"], caption="../report/translation_preview.rst", category="Translation"),
        cache=directory(P["translated"]),
    params:
        translator=lambda w: CFG.translators[w.tname].translator,
        train=lambda w: as_arg(CFG.translators[w.tname].train),
        checkpoints=P["translator_checkpoints"],
        gpu_slots=gpu_slots,
    log:
        run=log_path("translate"),
        losses=log_path("translate", ".jsonl"),
    benchmark:
        benchmark_path("translate")
    priority: 10  # translators head the longest chains (translate -> the experiments consuming them)
    threads: 1  # two 1-thread jobs side by side beat one 2-thread job on CPU (SIFA: 1.58x from 2 threads); --set-threads to change
    resources:
        gpu=1,
        mem_mb=6000,
        runtime=240,
    conda:
        ENV
    shell:
        "OMP_NUM_THREADS={threads} xmodseg translate --translator {params.translator:q} --params {params.train} "
        "--seed {wildcards.seed:q} --source-cache {input.source:q} --target-cache {input.target:q} --model {output.model:q} "
        "--checkpoint-dir {params.checkpoints:q} --train-log {log.losses:q} --out-cache {output.cache:q} "
        "--quality {output.quality:q} --preview {output.preview:q} --gpu-slots {params.gpu_slots:q} > {log.run:q} 2>&1"


# Does a model trained with all target labels find the source anatomy in the translated images?
rule translation_check:
    input:
        unpack(lambda w: R.translation_check_inputs(CFG, w.tname, int(w.seed))),
    output:
        report(P["translator_anatomy"], caption="../report/translator_record.rst", category="Translation", subcategory="{tname}"),
    log:
        log_path("translation_check"),
    benchmark:
        benchmark_path("translation_check")
    threads: 1
    conda:
        ENV
    shell:
        "OMP_NUM_THREADS={threads} xmodseg translation-check --translated-cache {input.cache:q} "
        "--source-cache {input.source:q} --reference-model {input.reference:q} --out {output:q} > {log:q} 2>&1"
