"""`xmodseg explain EXP [CLASS]`: where one reported number came from, in about fifteen lines.

Read from the files the workflow wrote (nothing recomputed; `xmodseg audit` does that): the
experiment's mean over seeds, then per seed the model (sha256, config hash, commit, device,
iterations, time), the data it trained on (caches, labelled cases, declared inputs such as a warm
start or a translator) and the test volumes the number is a mean over.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from xmodseg.artifacts.metrics import METRIC_KEYS
from xmodseg.errors import ConfigError, InputDataError
from xmodseg.layout import PATTERNS, Layout, match
from xmodseg.reporting.compare import resolve_experiment


def _read(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def seed_files(exp: str, repo: Path, dataset: str | None) -> tuple[str, list[Path]]:
    """The data set and the per-seed metrics files of experiment `exp` (a name, a seed folder or a
    metrics.json), in seed order (seed2 before seed10)."""
    found = resolve_experiment(exp, repo / PATTERNS["evaluation_root"], dataset)
    found = sorted(found, key=lambda p: int(re.sub(r"\D", "", p.parent.name) or 0))
    where = match("seed_metrics", found[0].resolve().relative_to(repo.resolve())) if found[0].resolve().is_relative_to(repo.resolve()) else None
    ds = (where or {}).get("dataset") or str((_read(found[0]).get("experiment") or {}).get("dataset") or "")
    if not ds:
        raise InputDataError(f"{found[0]}: not under {repo / PATTERNS['evaluation_root']} and its experiment names no data set; pass an experiment name")
    return ds, found


def _short(sha: Any) -> str:
    return str(sha)[:12] if sha else "-"


def _cache_line(role: str, rec: dict[str, Any] | None) -> str | None:
    if not rec:
        return None
    labels = "labels used" if rec.get("labels_used") else "images only"
    return f"{role} {rec['cache']} (manifest {_short(rec.get('manifest_sha256'))}): {len(rec.get('cases') or [])} cases, {rec.get('slices', '?')} slices, {labels}"


def explain(exp: str, cls: str | None = None, *, metric: str = "dice", repo: str | os.PathLike[str] = ".", dataset: str | None = None) -> str:
    """The lineage of `metric` (of class `cls`, default the class mean) of experiment `exp`."""
    if metric not in METRIC_KEYS:
        raise ConfigError(f"--metric '{metric}': one of {sorted(METRIC_KEYS)}")
    root = Path(repo)
    ds, files = seed_files(exp, root, dataset)
    layout = Layout(ds)
    docs = [_read(f) for f in files]
    classes = docs[0]["class_names"]
    key = cls or "mean"
    if key != "mean" and key not in classes:
        raise ConfigError(f"class '{cls}' of {exp}: one of {classes}")
    values = [d["summary"][metric][key]["mean"] for d in docs]
    e = docs[0]["experiment"]
    agg = root / layout.experiment_metrics(exp)
    lines = []
    if agg.is_file():
        v = _read(agg).get(metric, {}).get(key) or {}
        lines.append(f"{exp}: {METRIC_KEYS[metric]} {key} = {_num(v.get('mean'))} ± {_num(v.get('std_over_seeds'))} (std over {len(docs)} seed(s)) in {os.path.relpath(agg, root)}")
    else:
        lines.append(f"{exp}: {METRIC_KEYS[metric]} {key} per seed {', '.join(_num(x) for x in values)} (not aggregated yet)")
    lines.append(f"method {e.get('method')} on {e.get('source')} -> {e.get('target')} of data set {ds}; scale: {e.get('scale') or 'not stated'}")
    budget = docs[0]["provenance"].get("label_budget") or {}
    if budget:
        lines.append(f"target labels: {budget.get('target')}" + (f" {budget.get('n_labelled')}/{budget.get('n_train')} training cases (drawn with seed {budget.get('seed')}: {', '.join(map(str, (budget.get('cases') or [])[:8]))}{' ...' if len(budget.get('cases') or []) > 8 else ''})" if budget.get("target") == "subset" else "")
                     + (f"; assistant {budget['assistant']}" if budget.get("assistant") else ""))
    for f, d, value in zip(files, docs, values, strict=True):
        prov = d["provenance"]
        side_path = root / layout.sidecar(exp, int(prov.get("seed", d["experiment"].get("seed", 0))))
        side = _read(side_path) if side_path.is_file() else {}
        git = prov.get("git") or {}
        loop = side.get("loop") or {}
        lines.append(f"seed {prov.get('seed')}: {_num(value)} from {os.path.relpath(f, root)} ({len(d['cases'])} test volumes: {', '.join(c['case'] for c in d['cases'][:6])}{' ...' if len(d['cases']) > 6 else ''})")
        lines.append(f"  model {prov.get('model')} sha256 {_short(prov.get('model_sha256'))}, config hash {_short(prov.get('model_config_hash'))}; "
                     f"{loop.get('iterations_done', '?')} iterations in {_num(loop.get('seconds'), 0)} s on {(side.get('device') or {}).get('device', prov.get('device', '?'))}")
        for role in ("source", "target", "target_unlabelled", "assistant"):
            line = _cache_line(role, (side.get("data") or {}).get(role))
            if line:
                lines.append("  " + line)
        for role, rec in sorted((side.get("inputs") or {}).items()):
            lines.append(f"  input {role}: {rec.get('path')} (sha256 {_short(rec.get('sha256'))})")
        lines.append(f"  code: commit {_short(git.get('commit'))}{' (uncommitted changes: ' + str(git.get('dirty_count')) + ' files)' if git.get('dirty') else ''}; "
                     f"evaluated on {prov.get('data_manifest')} (manifest {_short(prov.get('data_manifest_sha256'))})")
    lines.append(f"verify every link: xmodseg audit {os.path.relpath(agg, root) if agg.is_file() else os.path.relpath(files[0], root)}")
    return "\n".join(lines)


def _num(x: Any, digits: int = 3) -> str:
    return "N/A" if x is None else f"{float(x):.{digits}f}"

