"""A resumable grid of runs: named methods x training seeds, one folder and one record per run.

A method is a name, a config and ``KEY VALUE`` overrides; methods are listed in a YAML file
(``configs/Synthetic/benchmark_methods.yaml`` is the one ``tools/benchmark.py`` reads)::

    methods:
      vos_weight_0.5:                    # letters, digits and _ . + - ; names the run folders
        config: Synthetic/vos.yaml       # shipped with vos_det (vos_det.model_zoo), or a path
        overrides: {VOS.LOSS_WEIGHT: 0.5}  # optional
        description: VOS, 5x the loss    # optional, shown in reports

or on a command line as ``"NAME=CONFIG [KEY VALUE ...]"`` (:func:`parse_method`).

Run ``(method, seed)`` trains in ``<output>/runs/<method>/seed<seed>/`` (its ``OUTPUT_DIR``) with
``SEED`` = seed. Its config is written there as ``config.yaml`` before training, and
``run_record.json`` (the config's sha256 and the wall time) after its evaluation: a run with a
record of the same config is done and never trained again. A record of another config (a
changed override, config file or default) is not reused silently: :func:`plan_runs` refuses,
naming the changed keys, unless asked to train those runs again.
"""

import dataclasses
import functools
import hashlib
import json
import logging
import os
import re
import shlex
import shutil
from typing import Dict, List, Optional, Sequence, Tuple

import yaml
from detectron2.config import CfgNode, get_cfg

from ..config import add_vos_config, load_vos_config
from ..core.files import atomic_write
from ..evaluation.output_folder import EvaluationFolder
from .settings_diff import changed_settings, flatten

__all__ = [
    "ChangedRunsError",
    "GridRun",
    "Method",
    "config_sha256",
    "grid_runs",
    "load_methods",
    "parse_method",
    "plan_runs",
    "prepare_run",
    "read_run_record",
    "run_damage",
    "write_run_record",
]

logger = logging.getLogger(__name__)

RUN_RECORD = "run_record.json"
CONFIG_FILE = "config.yaml"
#: Files every finished run holds besides its record and evaluation (``inference/``).
RUN_FILES = ("model_final.pth", "metrics.json")
_METHOD_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]*")
_METHOD_KEYS = {"config", "overrides", "description"}
# Set by the grid itself, per run.
_GRID_KEYS = {"SEED": "the training seeds", "OUTPUT_DIR": "the output folder"}


class ChangedRunsError(ValueError):
    """Raised when saved runs were made with another config than the requested one."""


@dataclasses.dataclass(frozen=True)
class Method:
    """A named way to train a detector.

    Attributes:
        name (str): names the run folders (letters, digits and ``_ . + -``).
        config (str): a config shipped with vos_det (``vos_det.model_zoo.get_config_file``
            name, e.g. "Synthetic/vos.yaml") or the path of a YAML config.
        overrides (tuple): ``KEY, VALUE, ...`` applied after the config file.
        description (str): one line for reports.

    Raises:
        ValueError: for a name that cannot name a folder or an odd number of override items.
    """

    name: str
    config: str
    overrides: Tuple = ()
    description: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _METHOD_NAME.fullmatch(self.name):
            raise ValueError(
                f"Method name {self.name!r} is not allowed: use letters, digits and _ . + - "
                "(not first), as it names the run folders."
            )
        if len(self.overrides) % 2:
            raise ValueError(
                f"Method {self.name}: overrides must be KEY VALUE pairs, got "
                f"{list(self.overrides)}."
            )


def load_methods(path: str) -> Dict[str, Method]:
    """Read a methods file (the format is in this module's docstring).

    Args:
        path (str): the YAML file.

    Returns:
        dict[str, Method]: name -> method, in file order.

    Raises:
        FileNotFoundError: if the file does not exist.
        ValueError: naming the file and the entry, if it is not a methods file.
    """
    with open(path, encoding="utf-8") as f:
        try:
            data = yaml.safe_load(f)
        except yaml.YAMLError as e:
            raise ValueError(f"{path} is not valid YAML ({e}).") from e
    entries = data.get("methods") if isinstance(data, dict) else None
    if not isinstance(entries, dict) or not entries:
        raise ValueError(
            f"{path} must hold a non-empty mapping 'methods: {{name: {{config: ...}}}}'."
        )
    methods = {}
    for name, entry in entries.items():
        unknown = set(entry) - _METHOD_KEYS if isinstance(entry, dict) else None
        if unknown is None or unknown or not isinstance(entry.get("config"), str):
            raise ValueError(
                f"{path}: method {name!r} must be a mapping with a 'config' string and optionally "
                f"'overrides' (a mapping KEY: VALUE) and 'description'; got {entry!r}."
            )
        overrides = entry.get("overrides") or {}
        if not isinstance(overrides, dict):
            raise ValueError(f"{path}: the overrides of {name!r} must be a mapping KEY: VALUE.")
        items = tuple(item for pair in overrides.items() for item in pair)
        methods[name] = Method(str(name), entry["config"], items, entry.get("description", ""))
    return methods


def parse_method(text: str) -> Method:
    """Read a method written as ``"NAME=CONFIG [KEY VALUE ...]"`` (shell quoting applies).

    Raises:
        ValueError: naming the text, if it is not of that form.
    """
    words = shlex.split(text)
    name, equals, config = words[0].partition("=") if words else ("", "", "")
    if not (name and equals and config):
        raise ValueError(
            f"Method {text!r} is not of the form 'NAME=CONFIG [KEY VALUE ...]', e.g. "
            "'vos_w05=Synthetic/vos.yaml VOS.LOSS_WEIGHT 0.5'."
        )
    return Method(name, config, tuple(words[1:]))


@dataclasses.dataclass(frozen=True)
class GridRun:
    """One run of the grid.

    Attributes:
        method (Method): the method.
        seed (int): the training seed (``cfg.SEED``).
        cfg (CfgNode): the complete, frozen config; ``OUTPUT_DIR`` is the run's folder.
    """

    method: Method
    seed: int
    cfg: CfgNode

    @property
    def name(self) -> str:
        """``"<method>/seed<seed>"``."""
        return f"{self.method.name}/seed{self.seed}"

    @property
    def folder(self) -> str:
        """The run's folder (``OUTPUT_DIR``)."""
        return self.cfg.OUTPUT_DIR

    @property
    def evaluation(self) -> EvaluationFolder:
        """The run's evaluation folder, ``OUTPUT_DIR/inference``."""
        return EvaluationFolder(os.path.join(self.folder, "inference"))


def grid_runs(
    methods: Sequence[Method], seeds: Sequence[int], output: str, overrides: Sequence
) -> List[GridRun]:
    """Every method with every seed: config file, method overrides, ``overrides``, ``SEED``.

    Args:
        methods (Sequence[Method]): the methods.
        seeds (Sequence[int]): the training seeds (>= 0).
        output (str): the grid's folder; runs go to ``<output>/runs/<method>/seed<seed>``.
        overrides (Sequence): ``KEY, VALUE, ...`` for every run, after each method's own.

    Returns:
        list[GridRun]: method-major, seeds in the given order.

    Raises:
        ValueError: naming the method, for a config that cannot be built (unknown config file
            or key, bad value), or an override of a key the grid sets itself.
    """
    for source, items in [("the overrides", overrides)] + [
        (f"method {method.name}", method.overrides) for method in methods
    ]:
        for key in items[::2]:
            if key in _GRID_KEYS:
                raise ValueError(f"{source} set {key}, which the grid sets from {_GRID_KEYS[key]}.")
    runs = []
    for method in methods:
        for seed in seeds:
            folder = os.path.join(output, "runs", method.name, f"seed{seed}")
            items = [*method.overrides, *overrides, "SEED", seed]
            try:
                cfg = load_vos_config(method.config, items, folder)
            except (AssertionError, KeyError, OSError, TypeError, ValueError) as e:
                raise ValueError(
                    f"Method {method.name} ({method.config}, overrides {list(method.overrides)} "
                    f"and {list(overrides)} for every run) has no valid config: {e}"
                ) from e
            runs.append(GridRun(method, seed, cfg))
    return runs


def config_sha256(cfg: CfgNode) -> str:
    """The sha256 of a config's YAML dump without ``OUTPUT_DIR`` (a moved folder stays valid)."""
    cfg = cfg.clone()
    cfg.defrost()
    cfg.OUTPUT_DIR = ""
    return hashlib.sha256(cfg.dump().encode("utf-8")).hexdigest()


def read_run_record(run: GridRun) -> Optional[dict]:
    """The run's record (``method``, ``seed``, ``config_sha256``, ``wall_seconds``), or None
    when it has none (never finished).

    Raises:
        ValueError: naming the file, when it is not a readable record (e.g. truncated).
    """
    path = os.path.join(run.folder, RUN_RECORD)
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as f:
        try:
            record = json.load(f)
        except json.JSONDecodeError as error:
            raise ValueError(f"{path} is not a readable run record ({error})") from error
    if not isinstance(record, dict) or "config_sha256" not in record:
        raise ValueError(f"{path} is not a run record (no config_sha256)")
    return record


def run_damage(run: GridRun) -> Optional[str]:
    """What keeps a run with a record from being complete: its first missing or unreadable file
    (record, weights, training log, evaluation results, per-box scores), named; None if intact.
    """
    try:
        read_run_record(run)
        for name in RUN_FILES:
            if not os.path.isfile(os.path.join(run.folder, name)):
                return f"{os.path.join(run.folder, name)} is missing"
        result = run.evaluation.read_results()
        for dataset in (result.id_dataset, *result.ood):
            run.evaluation.load_box_scores(dataset)
    except (OSError, ValueError, KeyError, TypeError) as error:
        return str(error)
    return None


def write_run_record(run: GridRun, wall_seconds: float) -> None:
    """Mark a run as done: write its record (last, after its evaluation results).

    Args:
        run (GridRun): the run.
        wall_seconds (float): its training and evaluation time.
    """
    record = {
        "method": run.method.name,
        "seed": run.seed,
        "config_sha256": config_sha256(run.cfg),
        "wall_seconds": wall_seconds,
    }
    with atomic_write(os.path.join(run.folder, RUN_RECORD)) as f:
        json.dump(record, f, indent=2)


def prepare_run(run: GridRun) -> None:
    """Before (re)training: empty the run's folder, so that nothing of an earlier attempt (its
    record, training log, checkpoints, evaluation) mixes with the new run, and write the
    requested config as ``config.yaml``."""
    shutil.rmtree(run.folder, ignore_errors=True)
    os.makedirs(run.folder)
    with atomic_write(os.path.join(run.folder, CONFIG_FILE)) as f:
        f.write(run.cfg.dump())


@functools.lru_cache(maxsize=1)
def _default_config() -> Dict[str, object]:
    """Every key of a Detectron2 + VOS config at its default, flattened (built once; read
    only)."""
    cfg = get_cfg()
    add_vos_config(cfg)
    return flatten(yaml.safe_load(cfg.dump()))


def _config_changes(run: GridRun) -> List[str]:
    """What differs between the run's saved ``config.yaml`` and its requested config.

    A key the saved config lacks (added to vos_det after the run) is no change while the
    requested config holds its default: new options default to the behaviour before them.
    """
    path = os.path.join(run.folder, CONFIG_FILE)
    if not os.path.isfile(path):
        return [f"{CONFIG_FILE} missing"]
    with open(path, encoding="utf-8") as f:
        saved = yaml.safe_load(f)
    requested = yaml.safe_load(run.cfg.dump())
    return changed_settings(saved, requested, _default_config(), ignored={"OUTPUT_DIR"})


def plan_runs(runs: Sequence[GridRun], rerun_changed: bool = False) -> List[GridRun]:
    """The runs still to train.

    A run is done when its record and every file of a finished run are there and readable
    (:func:`run_damage`) and it was made with its requested config: its record holds that
    config's sha256, or its saved ``config.yaml`` differs only by keys added to vos_det since,
    at their defaults. A run without a record (new or interrupted) is to train, and so is a
    damaged one (a warning names it and the file). A run made with another config is trained
    again with ``rerun_changed`` (a warning names it and the changed keys); without, nothing is
    trained.

    Args:
        runs (Sequence[GridRun]): the grid.
        rerun_changed (bool): train again the runs saved with another config.

    Returns:
        list[GridRun]: the runs to train, in grid order.

    Raises:
        ChangedRunsError: naming every changed run and its changed keys, unless
            ``rerun_changed``.
    """
    pending, changed = [], []
    for run in runs:
        if not os.path.isfile(os.path.join(run.folder, RUN_RECORD)):
            pending.append(run)  # new, or interrupted before its record
            continue
        damage = run_damage(run)
        if damage:
            logger.warning("Training %s again: its saved run is incomplete (%s).", run.name, damage)
            pending.append(run)
        elif read_run_record(run).get("config_sha256") != config_sha256(run.cfg):
            changes = _config_changes(run)
            if changes:
                pending.append(run)
                changed.append(f"{run.name} ({'; '.join(changes)})")
    if changed and not rerun_changed:
        raise ChangedRunsError(
            f"{len(changed)} saved run(s) were made with another config than the requested one: "
            f"{', '.join(changed)}. Train them again with --rerun-changed (their results are "
            "replaced), or write to another --output."
        )
    if changed:
        logger.warning("Training again %d run(s) whose config changed: %s", len(changed), changed)
    return pending
