"""Typed on-disk contracts: what each stage writes and the next one reads.

- `cache`: the slice cache's `manifest.json` (CacheManifest, CaseRecord);
- `model_file`: `model.pt` (ModelFile) and its `model.json` sidecar (Sidecar);
- `metrics`: a seed's `metrics.json` (MetricsDoc), an experiment's aggregate (ExperimentMetrics) and
  the metric keys (METRIC_KEYS), defined here once.

Each class reads a file with `load(path)` (a missing or unknown key is an error naming the file and
the key) and writes it with `save(path)` (atomically), byte for byte as the writers before it did.
Nothing is imported here, so that reading a manifest does not import torch.
"""
