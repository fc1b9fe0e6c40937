# xmodseg: cross-modality (MR <-> CT) segmentation with domain adaptation.
# Thin on purpose: config + schema validation (rules/common.smk), one include per stage, `all`.
from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/synth.smk"
include: "workflow/rules/preprocess.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/report.smk"


localrules:
    all,


rule all:
    default_target: True
    input:
        report_outputs(),
        experiment_metrics(),
