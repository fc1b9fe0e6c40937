# Stage 5b: per-experiment aggregate over seeds (the DVC metric) and the report.
rule aggregate:
    input:
        lambda w: seed_metrics(w.exp),
    output:
        report("results/metrics/{dataset}/{exp}.json", caption="../report/experiment_metrics.rst", category="Summary", subcategory="{exp}"),
    log:
        "logs/aggregate/{dataset}/{exp}.log",
    benchmark:
        "results/benchmarks/aggregate/{dataset}/{exp}.tsv"
    conda:
        ENV
    shell:
        "xmodseg aggregate --metrics {input:q} --out {output:q} > {log:q} 2>&1"


rule report:
    input:
        metrics=all_seed_metrics(),
        translation=translator_outputs("quality"),
        anatomy=translator_outputs("anatomy"),
    output:
        md=report("results/report/summary.md", caption="../report/summary.rst", category="Summary"),
        csv=report("results/report/summary.csv", caption="../report/summary.rst", category="Summary"),
        bar=report("results/report/dice_bar.png", caption="../report/dice_bar.rst", category="Summary"),
        comparisons=report("results/report/comparisons.csv", caption="../report/comparisons.rst", category="Summary"),
        overlays=report(
            expand("results/report/overlay_{exp}.png", exp=EXPERIMENTS),
            caption="../report/overlay.rst",
            category="Overlays",
        ),
    params:
        title=config.get("report", {}).get("title", "xmodseg report"),  # plain text, quoted by :q below
        reference=lambda w: f"--reference {as_arg(config['reference'])}" if config.get("reference") else "",
        comparisons=as_arg(report_comparisons()),
        source_kinds=as_arg({m: DATASET.source_of(m).get("kind", "") for m in DATASET.modalities}),
    log:
        "logs/report/report.log",
    benchmark:
        "results/benchmarks/report/report.tsv"
    conda:
        ENV
    shell:
        "xmodseg report --metrics {input.metrics:q} --translation {input.translation:q} --anatomy {input.anatomy:q} "
        "--out results/report --title {params.title:q} {params.reference} --comparisons {params.comparisons} "
        "--source-kinds {params.source_kinds} > {log:q} 2>&1"
