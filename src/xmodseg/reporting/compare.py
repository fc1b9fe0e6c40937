"""Paired comparison of two experiments on the same target test volumes (`xmodseg compare`).

A claim such as "SIFA beats translate_then_segment" becomes a measured statement: for every
(test volume, seed) present in both experiments, the difference A - B of the per-volume mean over
the foreground classes of Dice and of ASSD (mm), then the mean difference over those pairs with a
percentile bootstrap 95% interval.

- Pairing: the same test case id and the same training seed value in A and B. Refused when the
  targets, the test cases (or their ground truth), the class names differ or no seed is shared.
- ASSD: a volume's mean is undefined (NaN) if any class's ASSD is (an empty mask); a pair where A's
  or B's is undefined is dropped and counted (`n_dropped`), never imputed.
- Interval: percentile bootstrap, resampling the pairs with replacement, N_RESAMPLES resamples, a
  fresh numpy Generator seeded with RNG_SEED for every statistic (the output is reproducible and
  does not depend on the order of comparisons), quantiles with numpy's default (linear) rule.
- Verdict: "A better" / "B better" when the interval excludes 0 (Dice: higher is better; ASSD:
  lower is better), else "no detectable difference"; no interval and no verdict from fewer than
  MIN_PAIRS pairs (one pair would give a zero-width interval that always "excludes 0").
- Sign test: the exact two-sided p-value of the counts of pairs where A is better and where B is
  (ties left out), as a small-n check on the verdict: with 4 pairs all in A's favour it is 0.125,
  while the bootstrap interval of 4 same-signed differences always excludes 0.

The unit is one (volume, seed) pair, and n is small: 4 test volumes per modality in the SIFA
split, so 4 pairs per seed. Pairs sharing a volume (several seeds) or a seed are not independent,
and a percentile bootstrap undercovers at such n; read an interval as a description of these runs
on these volumes, not as a statement about patients in general.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from xmodseg.artifacts.metrics import HIGHER_IS_BETTER, METRIC_KEYS, MetricsDoc
from xmodseg.errors import InputDataError

N_RESAMPLES = 10_000
MIN_PAIRS = 2
RNG_SEED = 0
CONFIDENCE = 0.95
PAIRED = ("dice", "assd_mm")  # the metrics compared
METRICS = {k: (METRIC_KEYS[k], HIGHER_IS_BETTER[k]) for k in PAIRED}  # key: (title, higher is better)


@dataclass(frozen=True)
class PairedDifference:
    """Mean of A - B over pairs and its bootstrap interval, for one metric and class ("mean" =
    the per-volume mean over the foreground classes)."""

    metric: str
    cls: str
    mean_diff: float
    ci_low: float
    ci_high: float
    n_pairs: int
    n_dropped: int
    n_a_better: int
    n_b_better: int

    @property
    def higher_is_better(self) -> bool:
        return METRICS[self.metric][1]

    @property
    def sign_test_p(self) -> float:
        return sign_test(self.n_a_better, self.n_b_better)

    @property
    def verdict(self) -> str:
        if self.n_pairs == 0:
            return "undefined (no pair with both values defined)"
        if self.n_pairs < MIN_PAIRS or math.isnan(self.ci_low):
            return f"too few pairs for an interval (n = {self.n_pairs})"
        if self.ci_low > 0 or self.ci_high < 0:
            return "A better" if (self.ci_low > 0) == self.higher_is_better else "B better"
        return "no detectable difference"


@dataclass
class Comparison:
    """Everything `xmodseg compare` states about one pair of experiments."""

    a: str
    b: str
    target: str
    directions: tuple[str, str]
    seeds: list[int]
    cases: list[str]
    differences: list[PairedDifference]
    a_files: list[str]
    b_files: list[str]
    seeds_only_a: list[int] = field(default_factory=list)
    seeds_only_b: list[int] = field(default_factory=list)
    n_resamples: int = N_RESAMPLES
    rng_seed: int = RNG_SEED

    def get(self, metric: str, cls: str = "mean") -> PairedDifference:
        return next(d for d in self.differences if d.metric == metric and d.cls == cls)

    def verdict_text(self, d: PairedDifference) -> str:
        """The verdict with the experiment names in place of A and B."""
        if d.verdict == "A better":
            return f"{self.a} better: interval excludes 0"
        if d.verdict == "B better":
            return f"{self.b} better: interval excludes 0"
        return d.verdict

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["differences"] = [{**_finite({**asdict(d), "sign_test_p": d.sign_test_p}), "verdict": d.verdict} for d in self.differences]
        out["statistic"] = (
            f"mean over (test volume, seed) pairs of A - B; percentile bootstrap {CONFIDENCE:.0%} interval, "
            f"{self.n_resamples} resamples of the pairs, numpy RNG seed {self.rng_seed}"
        )
        return out


def _finite(d: Mapping[str, Any]) -> dict[str, Any]:
    """NaN -> None, so the JSON is strict."""
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in d.items()}


def sign_test(k: int, j: int) -> float:
    """Exact two-sided sign test: P(a split at least as uneven as k : j under a fair coin)."""
    n = k + j
    if n == 0:
        return math.nan
    tail = sum(math.comb(n, i) for i in range(min(k, j) + 1)) / 2**n
    return min(1.0, 2 * tail)


def bootstrap_interval(
    diffs: Sequence[float] | np.ndarray, *, n_resamples: int = N_RESAMPLES, seed: int = RNG_SEED, confidence: float = CONFIDENCE
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of `diffs` (resampling with replacement)."""
    arr = np.asarray(diffs, dtype=np.float64)
    if arr.size == 0:
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    means = arr[rng.integers(0, arr.size, size=(n_resamples, arr.size))].mean(axis=1)
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(means, [alpha, 1.0 - alpha])
    # A constant difference must give exactly that value, not a rounding neighbour of it.
    return float(min(max(low, arr.min()), arr.max())), float(min(max(high, arr.min()), arr.max()))


def paired_difference(
    metric: str, cls: str, a: Sequence[float], b: Sequence[float], *, n_resamples: int = N_RESAMPLES, seed: int = RNG_SEED
) -> PairedDifference:
    """A - B over pairs; pairs with an undefined (NaN) value on either side are dropped and counted."""
    av, bv = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    keep = ~(np.isnan(av) | np.isnan(bv))
    diffs = av[keep] - bv[keep]
    low, high = bootstrap_interval(diffs, n_resamples=n_resamples, seed=seed) if diffs.size >= MIN_PAIRS else (math.nan, math.nan)
    higher = METRICS[metric][1]
    a_better = int((diffs > 0).sum() if higher else (diffs < 0).sum())
    b_better = int((diffs < 0).sum() if higher else (diffs > 0).sum())
    return PairedDifference(
        metric=metric,
        cls=cls,
        mean_diff=float(diffs.mean()) if diffs.size else math.nan,
        ci_low=low,
        ci_high=high,
        n_pairs=int(diffs.size),
        n_dropped=int((~keep).sum()),
        n_a_better=a_better,
        n_b_better=b_better,
    )


# ---- loading ------------------------------------------------------------------------------------


def load_metrics(path: str | os.PathLike[str]) -> MetricsDoc:
    """A per-seed metrics.json (xmodseg.evaluation.evaluate), checked for what pairing needs."""
    p = Path(path)
    doc = MetricsDoc.load(p)
    for key in ("name", "target", "seed"):
        if key not in doc.experiment:
            raise InputDataError(f"{p}: experiment.{key} missing (evaluated by an older version? rerun evaluate)")
    for case in doc.cases:
        for key in METRICS:
            missing = [c for c in doc.class_names if c not in case.get(key, {})]
            if missing:
                raise InputDataError(f"{p}: case {case.get('case')} has no {key} for {missing}")
    return doc


def resolve_experiment(spec: str, root: str | os.PathLike[str] = "results/evaluation", dataset: str | None = None) -> list[Path]:
    """The seed metrics files of `spec`: a metrics.json path, a folder holding seed*/metrics.json,
    or an experiment name looked up as <root>/<dataset>/<name>/seed*/metrics.json."""
    p = Path(spec)
    if p.is_file():
        return [p]
    if p.is_dir():
        files = sorted(p.glob("seed*/metrics.json"))
        if not files:
            raise InputDataError(f"{p}: no seed*/metrics.json in this folder")
        return files
    base = Path(root)
    if dataset is not None:
        files = sorted((base / dataset / spec).glob("seed*/metrics.json"))
        if not files:
            raise InputDataError(f"{spec}: no {base / dataset / spec}/seed*/metrics.json (evaluate it first, or give a metrics.json path)")
        return files
    by_dataset: dict[str, list[Path]] = {}
    for f in sorted(base.glob(f"*/{spec}/seed*/metrics.json")):
        by_dataset.setdefault(f.parent.parent.parent.name, []).append(f)
    if not by_dataset:
        raise InputDataError(f"{spec}: not a file, and no {base}/*/{spec}/seed*/metrics.json (evaluate it first, or give a metrics.json path or --metrics-root)")
    if len(by_dataset) > 1:
        raise InputDataError(f"{spec}: evaluated on several data sets under {base} ({', '.join(sorted(by_dataset))}); choose one with --dataset")
    return next(iter(by_dataset.values()))


def _one_experiment(docs: Sequence[MetricsDoc], role: str) -> tuple[str, str, dict[int, MetricsDoc]]:
    """(name, target, {seed: doc}) of one side, refusing mixed experiments or repeated seeds."""
    if not docs:
        raise InputDataError(f"experiment {role}: no metrics files")
    names = sorted({d.name for d in docs})
    targets = sorted({d.experiment["target"] for d in docs})
    if len(names) > 1 or len(targets) > 1:
        raise InputDataError(f"experiment {role}: the metrics files mix experiments {names} / targets {targets}: {[d.path for d in docs]}")
    by_seed: dict[int, MetricsDoc] = {}
    for d in docs:
        seed = int(d.seed)
        if seed in by_seed:
            raise InputDataError(f"experiment {names[0]}: seed {seed} twice ({by_seed[seed].path}, {d.path})")
        by_seed[seed] = d
    return names[0], targets[0], by_seed


def direction_label(source: str, target: str) -> str:
    """"MR→CT"; one modality (a semi-supervised experiment, source = target) is just "CT"."""
    return target.upper() if source == target else f"{source.upper()}→{target.upper()}"


def _direction(doc: MetricsDoc) -> str:
    exp = doc.experiment
    return direction_label(str(exp.get("source", "?")), str(exp["target"]))


def _volume_values(case: Mapping[str, Any], key: str, classes: Sequence[str]) -> dict[str, float]:
    """Per class and the per-volume mean over classes (NaN if any class is undefined)."""
    vals = {c: math.nan if case[key][c] is None else float(case[key][c]) for c in classes}
    return {**vals, "mean": float(np.mean([vals[c] for c in classes]))}


def compare_docs(
    docs_a: Sequence[MetricsDoc | Mapping[str, Any]],
    docs_b: Sequence[MetricsDoc | Mapping[str, Any]],
    *,
    n_resamples: int = N_RESAMPLES,
    seed: int = RNG_SEED,
) -> Comparison:
    """Pair two experiments' per-seed metrics documents by (test case, seed) and compare them
    (a document held as a dict: see MetricsDoc.coerce)."""
    a_docs, b_docs = [MetricsDoc.coerce(d) for d in docs_a], [MetricsDoc.coerce(d) for d in docs_b]
    name_a, target_a, seeds_a = _one_experiment(a_docs, "A")
    name_b, target_b, seeds_b = _one_experiment(b_docs, "B")
    what = f"cannot pair {name_a} (A) with {name_b} (B)"
    if target_a != target_b:
        raise InputDataError(f"{what}: different targets ({target_a} vs {target_b}); paired differences need the same target test volumes")
    ds_a = {d.experiment["dataset"] for d in a_docs if d.experiment.get("dataset") is not None}
    ds_b = {d.experiment["dataset"] for d in b_docs if d.experiment.get("dataset") is not None}
    if ds_a and ds_b and ds_a != ds_b:
        raise InputDataError(f"{what}: different data sets ({sorted(ds_a)} vs {sorted(ds_b)})")
    classes = list(next(iter(seeds_a.values())).class_names)
    for d in [*a_docs, *b_docs]:
        if list(d.class_names) != classes:
            raise InputDataError(f"{what}: different classes ({classes} vs {list(d.class_names)} in {d.path})")
    common = sorted(set(seeds_a) & set(seeds_b))
    if not common:
        raise InputDataError(f"{what}: no seed in common ({name_a} has seeds {sorted(seeds_a)}, {name_b} has {sorted(seeds_b)})")
    values: dict[str, dict[str, tuple[list[float], list[float]]]] = {k: {} for k in METRICS}
    cases: list[str] = []
    for s in common:
        da, db = seeds_a[s], seeds_b[s]
        ca = {c["case"]: c for c in da.cases}
        cb = {c["case"]: c for c in db.cases}
        if set(ca) != set(cb):
            raise InputDataError(
                f"{what}: different test cases for seed {s}: only in {name_a}: {sorted(set(ca) - set(cb))}, "
                f"only in {name_b}: {sorted(set(cb) - set(ca))} ({da.path}, {db.path})"
            )
        for case_id in sorted(ca):
            sha_a, sha_b = ca[case_id].get("ground_truth_sha256"), cb[case_id].get("ground_truth_sha256")
            if sha_a and sha_b and sha_a != sha_b:
                raise InputDataError(f"{what}: case {case_id} has different ground truth (sha256 {sha_a[:12]} vs {sha_b[:12]}; {da.path}, {db.path})")
            if case_id not in cases:
                cases.append(case_id)
            for key in METRICS:
                va, vb = _volume_values(ca[case_id], key, classes), _volume_values(cb[case_id], key, classes)
                for cls in ["mean", *classes]:
                    pair = values[key].setdefault(cls, ([], []))
                    pair[0].append(va[cls])
                    pair[1].append(vb[cls])
    diffs = [paired_difference(key, "mean", *values[key]["mean"], n_resamples=n_resamples, seed=seed) for key in METRICS]
    diffs += [paired_difference("dice", c, *values["dice"][c], n_resamples=n_resamples, seed=seed) for c in classes]
    return Comparison(
        a=name_a,
        b=name_b,
        target=target_a,
        directions=(_direction(a_docs[0]), _direction(b_docs[0])),
        seeds=common,
        cases=cases,
        differences=diffs,
        a_files=[str(seeds_a[s].path) for s in sorted(seeds_a)],
        b_files=[str(seeds_b[s].path) for s in sorted(seeds_b)],
        seeds_only_a=sorted(set(seeds_a) - set(seeds_b)),
        seeds_only_b=sorted(set(seeds_b) - set(seeds_a)),
        n_resamples=n_resamples,
        rng_seed=seed,
    )


def compare_files(files_a: Iterable[str | os.PathLike[str]], files_b: Iterable[str | os.PathLike[str]]) -> Comparison:
    return compare_docs([load_metrics(f) for f in files_a], [load_metrics(f) for f in files_b])


# ---- output -------------------------------------------------------------------------------------


def format_diff(v: float) -> str:
    return "N/A" if math.isnan(v) else f"{v:+.3f}"


def format_p(p: float) -> str:
    return "N/A" if math.isnan(p) else f"{p:.3g}"


def format_interval(d: PairedDifference) -> str:
    return "N/A" if math.isnan(d.ci_low) else f"[{d.ci_low:+.3f}, {d.ci_high:+.3f}]"


def pairs_text(c: Comparison, d: PairedDifference) -> str:
    """'8 (4 volumes × 2 seeds)', plus the dropped pairs if any."""
    nv, ns = len(c.cases), len(c.seeds)
    text = f"{d.n_pairs} ({nv} volume{'s' if nv != 1 else ''} × {ns} seed{'s' if ns != 1 else ''}"
    return text + (f", {d.n_dropped} dropped: ASSD undefined)" if d.n_dropped else ")")


def rows(c: Comparison) -> list[dict[str, Any]]:
    """One CSV row per metric/class of a comparison."""
    return [
        {
            "experiment_a": c.a,
            "experiment_b": c.b,
            "target": c.target,
            "metric": d.metric,
            "class": d.cls,
            "mean_diff": d.mean_diff,
            "ci_low": d.ci_low,
            "ci_high": d.ci_high,
            "n_pairs": d.n_pairs,
            "n_volumes": len(c.cases),
            "n_seeds": len(c.seeds),
            "n_dropped": d.n_dropped,
            "n_a_better": d.n_a_better,
            "n_b_better": d.n_b_better,
            "sign_test_p": d.sign_test_p,
            "verdict": d.verdict,
        }
        for d in c.differences
    ]


def format_comparison(c: Comparison) -> str:
    """The short table `xmodseg compare` prints."""
    seeds = ", ".join(map(str, c.seeds))
    lines = [
        f"A = {c.a} ({c.directions[0]}), B = {c.b} ({c.directions[1]}); target {c.target} test volumes {', '.join(c.cases)}; seeds {seeds}",
        f"A - B per (test volume, seed) pair: per-volume mean over foreground classes (and per class for Dice); "
        f"mean over pairs, percentile bootstrap {CONFIDENCE:.0%} CI ({c.n_resamples} resamples of the pairs, RNG seed {c.rng_seed}).",
        "Dice: positive = A better; ASSD: negative = A better.",
        "",
        f"{'metric':<10} {'class':<6} {'A - B':>7}  {'95% CI':<18} {'pairs':>5} {'A better':>8} {'sign p':>6}  verdict",
    ]
    for d in c.differences:
        title = METRICS[d.metric][0]
        lines.append(
            f"{title:<10} {d.cls:<6} {format_diff(d.mean_diff):>7}  {format_interval(d):<18} {d.n_pairs:>5} "
            f"{f'{d.n_a_better}/{d.n_pairs}':>8} {format_p(d.sign_test_p):>6}  {c.verdict_text(d)}"
        )
    notes = [f"{d.n_dropped} pair(s) dropped from {METRICS[d.metric][0]} {d.cls}: ASSD undefined (an empty mask) in A or B" for d in c.differences if d.n_dropped]
    if c.seeds_only_a or c.seeds_only_b:
        notes.append(f"seeds not in both (not used): {c.a} {c.seeds_only_a}, {c.b} {c.seeds_only_b}")
    n = c.get("dice").n_pairs
    notes.append(
        f"{n} pairs from {len(c.cases)} volumes: pairs sharing a volume or seed are not independent and a percentile bootstrap "
        "is too narrow at small n; this describes these runs on these volumes."
    )
    return "\n".join(lines + [""] + [f"note: {t}" for t in notes])
