# Config validation and the small input/params functions the rules use (no logic beyond lookup).
import json
import re
import shlex

from snakemake.utils import validate

from xmodseg.gpu_lease import export_slots as export_gpu_slots
from xmodseg.methods import available_methods, get_method
from xmodseg.registry import check_has_test_cases, load_dataset
from xmodseg.translation.registry import available_translators, get_translator


validate(config, schema="../schemas/config.schema.yaml")

DS = config["dataset"]
DATASET = load_dataset(config["registry"], DS)
EXPERIMENTS = config["experiments"]
TRANSLATORS = config.get("translators", {})
ENV = "../../envs/xmodseg.yaml"

for _name, _exp in EXPERIMENTS.items():
    if _exp["method"] not in available_methods():
        raise ValueError(f"experiments.{_name}.method: '{_exp['method']}' is not one of {available_methods()}")
    get_method(_exp["method"]).check_params(_exp["train"], f"experiments.{_name}.train")  # unknown keys would be ignored
    for _role in ("source", "target"):
        DATASET.modality(_exp[_role])  # raises naming the missing modality
    check_has_test_cases(DATASET, _exp["target"], f"experiments.{_name}")  # before any job, not after training
    if _exp["method"] == "translate_then_segment" and "translator" not in _exp:
        raise ValueError(f"experiments.{_name}.translator: required for method translate_then_segment")
    if "translator" in _exp:
        _tr = TRANSLATORS.get(_exp["translator"])
        if _tr is None:
            raise ValueError(f"experiments.{_name}.translator: '{_exp['translator']}' is not in translators ({sorted(TRANSLATORS)})")
        if (_tr["source"], _tr["target"]) != (_exp["source"], _exp["target"]):
            raise ValueError(f"experiments.{_name}: translator '{_exp['translator']}' goes {_tr['source']}->{_tr['target']}")
        if _exp.get("translator_seed", _tr["seeds"][0]) not in _tr["seeds"]:
            raise ValueError(f"experiments.{_name}.translator_seed: not one of translators.{_exp['translator']}.seeds")
    if "warm_start" in _exp:
        _tr = TRANSLATORS.get(_exp["warm_start"])
        if _exp["method"] != "sifa":
            raise ValueError(f"experiments.{_name}.warm_start: only method sifa takes a warm start")
        if _tr is None or _tr["translator"] != "cyclegan":
            raise ValueError(f"experiments.{_name}.warm_start: '{_exp['warm_start']}' is not a cyclegan entry of translators")
        if (_tr["source"], _tr["target"]) != (_exp["source"], _exp["target"]):
            raise ValueError(f"experiments.{_name}: warm start '{_exp['warm_start']}' goes {_tr['source']}->{_tr['target']}")
for _name, _tr in TRANSLATORS.items():
    if _tr["translator"] not in available_translators():
        raise ValueError(f"translators.{_name}.translator: '{_tr['translator']}' is not one of {available_translators()}")
    get_translator(_tr["translator"]).check_params(_tr["train"], f"translators.{_name}.train")
    for _role in ("source", "target"):
        DATASET.modality(_tr[_role])


def gpu_slots():
    """The N of `--resources gpu=N` (None without it). GPU jobs lease one of N device slots
    (xmodseg.gpu_lease), so the GPU count is stated once, on Snakemake's command line or profile.
    `workflow.global_resources` is Snakemake's parsed resource table (checked on 9.27)."""
    res = getattr(workflow, "global_resources", {}).get("gpu")
    value = getattr(res, "value", res)
    return int(value) if isinstance(value, (int, float)) else None


export_gpu_slots(gpu_slots())  # XMODSEG_GPU_SLOTS, inherited by local jobs


# Names match NAME_PATTERN (schema, registry); escaped here so that a `.` matches only itself.
wildcard_constraints:
    dataset=re.escape(DS),
    modality="|".join(map(re.escape, DATASET.modalities)),
    exp="|".join(map(re.escape, EXPERIMENTS)),
    tname="|".join(map(re.escape, TRANSLATORS)) or "no-translators",
    seed=r"\d+",


def as_arg(obj):
    """A config block as one shell-quoted JSON argument (also what Snakemake compares for reruns)."""
    return shlex.quote(json.dumps(obj, sort_keys=True))


def cache_dir(modality):
    return f"data/prepared/{DS}/{modality}"


def raw_files(wildcards):
    mod = DATASET.modality(wildcards.modality)
    return [str(p) for c in mod.cases for p in (DATASET.image_path(mod.name, c), DATASET.label_path(mod.name, c))]


def translated_cache(exp):
    """The translated source cache an experiment trains on (its translator's first seed by default)."""
    seed = exp.get("translator_seed", TRANSLATORS[exp["translator"]]["seeds"][0])
    return f"data/translated/{DS}/{exp['translator']}/seed{seed}"


def experiment_inputs(wildcards):
    """The caches an experiment trains on, plus the translator model it warm-starts from (if any)."""
    exp = EXPERIMENTS[wildcards.exp]
    source = translated_cache(exp) if "translator" in exp else cache_dir(exp["source"])
    inputs = {"source": source, "target": cache_dir(exp["target"])}
    if "warm_start" in exp:
        tr = TRANSLATORS[exp["warm_start"]]
        inputs["warm_start"] = f"results/translators/{DS}/{exp['warm_start']}/seed{tr['seeds'][0]}/model.pt"
    return inputs


def train_priority(wildcards):
    """Adaptation methods (target images, no target labels: SIFA, ...) run for many minutes; start
    them before the one-minute segmenters so they do not end up alone on the critical path."""
    needs = get_method(EXPERIMENTS[wildcards.exp]["method"]).needs
    return 5 if needs.target_images and not needs.target_labels else 0


def warm_start_arg(wildcards, input):
    return f"--warm-start {shlex.quote(input.warm_start)}" if "warm_start" in input.keys() else ""


def oracle_model(target):
    """The model of the first oracle experiment on `target` (for the anatomy check), or None."""
    for name, exp in EXPERIMENTS.items():
        if exp["method"] == "oracle" and exp["target"] == target:
            return f"results/models/{DS}/{name}/seed{exp['seeds'][0]}/model.pt"
    return None


def translator_outputs(kind):
    """quality.json of every translator/seed, or anatomy.json where an oracle exists for the target."""
    out = []
    for name, tr in TRANSLATORS.items():
        if kind == "anatomy" and oracle_model(tr["target"]) is None:
            continue
        out += [f"results/translators/{DS}/{name}/seed{s}/{kind}.json" for s in tr["seeds"]]
    return out


def experiment_record(wildcards):
    """The resolved experiment, recorded in metrics.json provenance."""
    exp = EXPERIMENTS[wildcards.exp]
    translator = {"translator_kind": TRANSLATORS[exp["translator"]]["translator"]} if "translator" in exp else {}
    return as_arg(
        {
            "name": wildcards.exp,
            "dataset": DS,
            "seed": int(wildcards.seed),
            "preprocess": config["preprocess"],
            **exp,
            **translator,
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


def report_comparisons():
    """`report.comparisons`, checked while the workflow is parsed (not after hours of training)."""
    pairs = config.get("report", {}).get("comparisons", [])
    for i, (a, b) in enumerate(pairs):
        for name in (a, b):
            if name not in EXPERIMENTS:
                raise ValueError(f"report.comparisons[{i}]: '{name}' is not in experiments ({sorted(EXPERIMENTS)})")
        if EXPERIMENTS[a]["target"] != EXPERIMENTS[b]["target"]:
            raise ValueError(f"report.comparisons[{i}]: {a} and {b} have different targets; paired differences need the same test volumes")
        if not set(EXPERIMENTS[a]["seeds"]) & set(EXPERIMENTS[b]["seeds"]):
            raise ValueError(f"report.comparisons[{i}]: {a} and {b} have no seed in common; pairs are (test volume, seed)")
    return pairs
