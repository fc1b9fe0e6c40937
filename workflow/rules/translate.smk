# Stage 3: unpaired image translation (source -> target) per translator entry and seed.
# Its translated cache feeds translate_then_segment, its generator SIFA's warm start; changing a
# downstream segmenter never retrains the translator.
rule translate:
    input:
        source=lambda w: cache_dir(TRANSLATORS[w.tname]["source"]),
        target=lambda w: cache_dir(TRANSLATORS[w.tname]["target"]),
    output:
        model="results/translators/{dataset}/{tname}/seed{seed}/model.pt",
        sidecar=report("results/translators/{dataset}/{tname}/seed{seed}/model.json", caption="../report/translator_record.rst", category="Translation", subcategory="{tname}"),
        quality=report("results/translators/{dataset}/{tname}/seed{seed}/quality.json", caption="../report/translator_record.rst", category="Translation", subcategory="{tname}"),
        preview=report(
            "results/translators/{dataset}/{tname}/seed{seed}/preview.png",
            caption="../report/translation_preview.rst",
            category="Translation",
        ),
        cache=directory("data/translated/{dataset}/{tname}/seed{seed}"),
    params:
        translator=lambda w: TRANSLATORS[w.tname]["translator"],
        train=lambda w: as_arg(TRANSLATORS[w.tname]["train"]),
        checkpoints="results/checkpoints/{dataset}/translators/{tname}/seed{seed}",
    log:
        run="logs/translate/{dataset}/{tname}/seed{seed}.log",
        losses="logs/translate/{dataset}/{tname}/seed{seed}.jsonl",
    benchmark:
        "results/benchmarks/translate/{dataset}/{tname}/seed{seed}.tsv"
    priority: 10  # translators head the longest chains (translate -> SIFA / translate_then_segment)
    threads: 2
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
        "--quality {output.quality:q} --preview {output.preview:q} > {log.run:q} 2>&1"


rule translation_check:
    input:
        cache="data/translated/{dataset}/{tname}/seed{seed}",
        source=lambda w: cache_dir(TRANSLATORS[w.tname]["source"]),
        oracle=lambda w: oracle_model(TRANSLATORS[w.tname]["target"]),
    output:
        report("results/translators/{dataset}/{tname}/seed{seed}/anatomy.json", caption="../report/translator_record.rst", category="Translation", subcategory="{tname}"),
    log:
        "logs/translation_check/{dataset}/{tname}/seed{seed}.log",
    benchmark:
        "results/benchmarks/translation_check/{dataset}/{tname}/seed{seed}.tsv"
    threads: 1
    conda:
        ENV
    shell:
        "OMP_NUM_THREADS={threads} xmodseg translation-check --translated-cache {input.cache:q} "
        "--source-cache {input.source:q} --oracle {input.oracle:q} --out {output:q} > {log:q} 2>&1"
