# Config validation and the small input/params functions the rules use (no logic beyond lookup).
import json
import shlex

from snakemake.utils import validate

from xmodseg.methods import available_methods
from xmodseg.registry import load_dataset


validate(config, schema="../schemas/config.schema.yaml")

DS = config["dataset"]
DATASET = load_dataset(config["registry"], DS)
EXPERIMENTS = config["experiments"]
ENV = "../../envs/xmodseg.yaml"

for _name, _exp in EXPERIMENTS.items():
    if _exp["method"] not in available_methods():
        raise ValueError(f"experiments.{_name}.method: '{_exp['method']}' is not one of {available_methods()}")
    for _role in ("source", "target"):
        DATASET.modality(_exp[_role])  # raises naming the missing modality


wildcard_constraints:
    dataset=DS,
    modality="|".join(DATASET.modalities),
    exp="|".join(EXPERIMENTS),
    seed=r"\d+",


def as_arg(obj):
    """A config block as one shell-quoted JSON argument (also what Snakemake compares for reruns)."""
    return shlex.quote(json.dumps(obj, sort_keys=True))


def cache_dir(modality):
    return f"data/prepared/{DS}/{modality}"


def raw_files(wildcards):
    mod = DATASET.modality(wildcards.modality)
    return [str(p) for c in mod.cases for p in (DATASET.image_path(mod.name, c), DATASET.label_path(mod.name, c))]


def experiment_caches(wildcards):
    exp = EXPERIMENTS[wildcards.exp]
    return {"source": cache_dir(exp["source"]), "target": cache_dir(exp["target"])}


def experiment_record(wildcards):
    """The resolved experiment, recorded in metrics.json provenance."""
    exp = EXPERIMENTS[wildcards.exp]
    return as_arg(
        {
            "name": wildcards.exp,
            "dataset": DS,
            "seed": int(wildcards.seed),
            "preprocess": config["preprocess"],
            **exp,
        }
    )


def seed_metrics(exp):
    return [f"results/evaluation/{DS}/{exp}/seed{s}/metrics.json" for s in EXPERIMENTS[exp]["seeds"]]


def all_seed_metrics():
    return [m for exp in EXPERIMENTS for m in seed_metrics(exp)]


def experiment_metrics():
    return [f"results/metrics/{DS}/{exp}.json" for exp in EXPERIMENTS]


def report_outputs():
    return ["results/report/summary.md", "results/report/summary.csv", "results/report/dice_bar.png"]
