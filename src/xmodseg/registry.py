"""The data-set registry (`config/datasets.yaml`): file layout, label mapping, classes and splits.

Every stage reads data sets only through this module, so a real data set (MM-WHS, CHAOS, ...) is a
registry entry, not code.
"""

from __future__ import annotations

import itertools
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

import yaml

from xmodseg.errors import ConfigError, SplitLeakError
from xmodseg.labels import LabelMapping

MODALITY_KINDS = ("mr", "ct", "rgb")  # rgb: colour frames (CaDIS), 3 channels through the pipeline
# Data-set, modality and case names become folder and file names and reach job command lines:
# a name that could mean something to a shell or a path (`, $, ;, space, /, a leading . or -) is refused.
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
NAME_RULE = "letters, digits, '_', '.' and '-', starting with a letter or digit"
DEFAULT_IMAGE = "{modality}/{case}_image.nii.gz"  # the registry layout, when an entry does not say
DEFAULT_LABEL = "{modality}/{case}_label.nii.gz"


def check_name(value: Any, key: str, what: str) -> str:
    """`value` if it is a safe name (NAME_PATTERN), else a ConfigError naming `key` and the rule."""
    if not isinstance(value, str) or not re.fullmatch(NAME_PATTERN, value):
        raise ConfigError(f"{key}: {what} {value!r} is not allowed (names become file names and command arguments); use only {NAME_RULE}")
    return value


class SourceKind(str, Enum):
    """Where a modality's raw files come from (`source.kind`): the workflow's fetch, synth and
    prepare-cache steps dispatch on this, not on strings."""

    LOCAL = "local"  # already in the registry layout
    SYNTHETIC = "synthetic"  # generated (xmodseg.synth)
    DOWNLOAD = "download"  # fetched, then imported
    IMPORT = "import"  # a registration-gated archive or folder, imported
    SIFA_RELEASE = "sifa_release"  # imported like `import`; its cache is built from the release files

    @property
    def fetched(self) -> bool:
        """Located or downloaded (`xmodseg fetch-source`), then converted (`xmodseg import`)."""
        return self in (SourceKind.DOWNLOAD, SourceKind.IMPORT, SourceKind.SIFA_RELEASE)


@dataclass(frozen=True)
class ModalitySpec:
    name: str  # e.g. "mr", "ct"
    kind: str  # intensity family used by normalisation: "mr", "ct" or "rgb" (colour frames, 3 channels)
    image_pattern: str
    label_pattern: str
    cases: tuple[str, ...]
    test_cases: tuple[str, ...]
    source: Mapping[str, Any] | None = None  # where this modality's files come from, if not the data set's
    labels: LabelMapping | None = None  # this modality's raw values, if they differ from the data set's

    @property
    def train_cases(self) -> tuple[str, ...]:
        test = set(self.test_cases)
        return tuple(c for c in self.cases if c not in test)

    def split_of(self, case: str) -> str:
        return "test" if case in self.test_cases else "train"


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    root: Path
    source: Mapping[str, Any]
    labels: LabelMapping
    modalities: Mapping[str, ModalitySpec]
    description: str = ""

    def modality(self, name: str) -> ModalitySpec:
        try:
            return self.modalities[name]
        except KeyError:
            raise ConfigError(f"dataset '{self.name}' has no modality '{name}' (has: {sorted(self.modalities)})") from None

    def labels_of(self, modality: str) -> LabelMapping:
        """The mapping of `modality`'s raw label values: its own (`modalities.<m>.labels.mapping`,
        e.g. MR 1/2/3 and CT 100/200/300 for the same classes) or the data set's."""
        return self.modality(modality).labels or self.labels

    def source_of(self, modality: str) -> Mapping[str, Any]:
        """The modality's own `source:` over the data set's (e.g. CHAOS MR and BTCV CT in one set)."""
        return {**self.source, **(self.modality(modality).source or {})}

    def source_kind(self, modality: str) -> SourceKind:
        kind = self.source_of(modality).get("kind", SourceKind.LOCAL.value)
        try:
            return SourceKind(kind)
        except ValueError:
            raise ConfigError(f"datasets.{self.name}: source kind {kind!r} of modality '{modality}' is not one of {[k.value for k in SourceKind]}") from None

    def image_path(self, modality: str, case: str) -> Path:
        return self.root / self.modality(modality).image_pattern.format(case=case, modality=modality)

    def label_path(self, modality: str, case: str) -> Path:
        return self.root / self.modality(modality).label_pattern.format(case=case, modality=modality)


def parse_cases(value: Any, key: str, relative_to: str | os.PathLike[str] | None = None) -> tuple[str, ...]:
    """Cases as a list (`[1001, 1002]`), an inclusive numeric range string (`"1001-1020"`; a
    zero-padded start keeps its width: `"001-150"`), a product of such parts formatted into ids
    (`{format: "patient{0}_{1}", product: ["001-150", [ED, ES]]}`: ACDC's two frames per patient),
    or a text file with one id per line (`{file: cadis_frames.txt}`, relative to `relative_to`,
    the registry's folder: CaDIS's thousands of frame ids)."""
    if isinstance(value, Mapping) and set(value) == {"file"}:
        return _cases_from_file(value["file"], key, relative_to)
    if isinstance(value, Mapping):
        if set(value) != {"format", "product"} or not isinstance(value["product"], Sequence) or isinstance(value["product"], str):
            raise ConfigError(f"{key}: a mapping of cases needs exactly `format` and `product` (a list of lists or ranges), or only `file`")
        parts = [parse_cases(v, f"{key}.product[{i}]") for i, v in enumerate(value["product"])]
        try:
            return tuple(str(value["format"]).format(*combo) for combo in itertools.product(*parts))
        except (IndexError, KeyError, ValueError) as exc:
            raise ConfigError(f"{key}.format: '{value['format']}' does not fit {len(parts)} product parts ({exc})") from None
    if isinstance(value, str) and "-" in value:
        lo, hi = value.split("-", 1)
        try:
            a, b = int(lo), int(hi)
        except ValueError:
            raise ConfigError(f"{key}: '{value}' is not a range like '1001-1020'") from None
        if b < a:
            raise ConfigError(f"{key}: empty range '{value}'")
        width = len(lo) if lo.startswith("0") else 0
        return tuple(str(i).zfill(width) for i in range(a, b + 1))
    if isinstance(value, Sequence) and not isinstance(value, str):
        return tuple(str(v) for v in value)
    raise ConfigError(f"{key}: expected a list of case ids, a range string or {{format, product}}, got {value!r}")


def _cases_from_file(name: Any, key: str, relative_to: str | os.PathLike[str] | None) -> tuple[str, ...]:
    path = Path(str(name))
    if not path.is_absolute() and relative_to is not None:
        path = Path(relative_to) / path
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise ConfigError(f"{key}.file: cannot read {path} ({exc.strerror}); the file lists one case id per line") from None
    cases = tuple(line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#"))
    if not cases:
        raise ConfigError(f"{key}.file: {path} lists no case ids")
    return cases


def check_split(spec: ModalitySpec, key: str, needs_train_cases: bool = True) -> None:
    """Case-level split guard: test ids exist, are unique and leave at least one training case
    (unless training slices come from elsewhere: the SIFA release's tfrecords)."""
    if len(set(spec.cases)) != len(spec.cases):
        raise ConfigError(f"{key}.cases: duplicate case ids")
    missing = sorted(set(spec.test_cases) - set(spec.cases))
    if missing:
        raise ConfigError(f"{key}.test: {missing} are not in {key}.cases")
    if needs_train_cases and not spec.train_cases:
        raise ConfigError(f"{key}: every case is a test case; nothing left to train on")


def assert_no_test_cases(used: Sequence[str], spec: ModalitySpec, purpose: str) -> None:
    """Raise if any test case is about to be used for `purpose` (training, statistics, selection)."""
    leaked = sorted(set(used) & set(spec.test_cases))
    if leaked:
        raise SplitLeakError(f"test cases {leaked} of modality '{spec.name}' would be used for {purpose}")


def check_has_test_cases(spec: DatasetSpec, modality: str, used_by: str) -> None:
    """A modality that `used_by` is evaluated on needs test cases: with an empty `test:` list the
    failure would only come after training, when evaluation finds nothing to score."""
    mod = spec.modality(modality)
    if not mod.test_cases:
        raise ConfigError(
            f"datasets.{spec.name}.modalities.{modality}.test is empty, but {used_by} is evaluated on the "
            f"'{modality}' test cases: list the test case ids there (some of its {len(mod.cases)} cases), or choose another target"
        )


def _modality_from_config(
    name: str, raw: Mapping[str, Any], key: str, source_kind: str | None = None, registry_dir: str | os.PathLike[str] | None = None,
    classes: Sequence[str] = (),
) -> ModalitySpec:
    if "cases" not in raw:
        raise ConfigError(f"{key}.cases is required")
    kind = str(raw.get("kind", name))
    if kind not in MODALITY_KINDS:
        raise ConfigError(f"{key}.kind: '{kind}' is not one of {MODALITY_KINDS}")
    spec = ModalitySpec(
        name=name,
        kind=kind,
        # where the importer writes (or the files already are): by default <modality>/<case>_image.nii.gz
        image_pattern=str(raw.get("image", DEFAULT_IMAGE)),
        label_pattern=str(raw.get("label", DEFAULT_LABEL)),
        cases=parse_cases(raw["cases"], f"{key}.cases", registry_dir),
        test_cases=parse_cases(raw.get("test", []), f"{key}.test", registry_dir),
        source=dict(raw["source"]) if raw.get("source") else None,
        labels=_modality_labels(raw.get("labels"), f"{key}.labels", classes),
    )
    for case in spec.cases:
        check_name(case, f"{key}.cases", "case id")  # test ids must be among the cases (check_split)
    kind_here = (spec.source or {}).get("kind", source_kind)
    check_split(spec, key, needs_train_cases=kind_here != "sifa_release")
    return spec


def _modality_labels(raw: Any, key: str, classes: Sequence[str]) -> LabelMapping | None:
    """A modality's own raw-value mapping onto the data set's classes ({mapping, ignore})."""
    if raw is None:
        return None
    if not isinstance(raw, Mapping) or "mapping" not in raw or set(raw) - {"mapping", "ignore"}:
        raise ConfigError(f"{key}: expected {{mapping: {{raw value: class index}}, ignore: [...]}} (the classes are the data set's labels.classes)")
    try:
        return LabelMapping.from_config(classes, raw["mapping"], raw.get("ignore", ()))
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{key}: {exc}") from None


def dataset_from_config(name: str, raw: Mapping[str, Any], base_dir: str | os.PathLike[str] = ".", registry_dir: str | os.PathLike[str] | None = None) -> DatasetSpec:
    """`registry_dir`: where `{file: ...}` case lists are found (the registry file's folder)."""
    key = f"datasets.{name}"
    check_name(name, "datasets", "data-set name")
    labels = raw.get("labels")
    mods = raw.get("modalities") or {}
    if not mods:
        raise ConfigError(f"{key}.modalities is empty")
    own = all(isinstance(m, Mapping) and (m.get("labels") or {}).get("mapping") is not None for m in mods.values())
    if not labels or "classes" not in labels or ("mapping" not in labels and not own):
        raise ConfigError(f"{key}.labels needs 'classes' and 'mapping' (or every modality its own labels.mapping)")
    try:
        # without a data-set mapping (each modality has its own), raw value i means class i
        default = {i: i for i in range(len(labels["classes"]))}
        mapping = LabelMapping.from_config(labels["classes"], labels.get("mapping", default), labels.get("ignore", ()))
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{key}.labels: {exc}") from None
    for m in mods:
        check_name(m, f"{key}.modalities", "modality name")
    root = Path(raw.get("root", f"data/raw/{name}"))
    if not root.is_absolute():
        root = Path(base_dir) / root
    return DatasetSpec(
        name=name,
        root=root,
        source=dict(raw.get("source", {"kind": "local"})),
        labels=mapping,
        modalities={
            m: _modality_from_config(m, r, f"{key}.modalities.{m}", (raw.get("source") or {}).get("kind"), registry_dir, mapping.class_names) for m, r in mods.items()
        },
        description=str(raw.get("description", "")),
    )


def read_yaml(path: str | os.PathLike[str], what: str) -> Any:
    """A YAML file's content; a missing or malformed file is a ConfigError naming it."""
    p = Path(path)
    try:
        return yaml.safe_load(p.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{what} {p} not found") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p}: invalid YAML: {exc}") from None


def load_registry(path: str | os.PathLike[str]) -> dict[str, Mapping[str, Any]]:
    p = Path(path)
    data = read_yaml(p, "registry file")
    if not isinstance(data, dict) or not isinstance(data.get("datasets"), dict):
        raise ConfigError(f"{p}: expected a top-level 'datasets:' mapping")
    for name in data["datasets"]:
        check_name(name, f"{p}: datasets", "data-set name")
    return data["datasets"]


def load_dataset(registry_path: str | os.PathLike[str], name: str, base_dir: str | os.PathLike[str] = ".") -> DatasetSpec:
    entries = load_registry(registry_path)
    if name not in entries:
        raise ConfigError(f"dataset '{name}' is not in {registry_path} (known: {sorted(entries)})")
    return dataset_from_config(name, entries[name], base_dir, Path(registry_path).parent)
