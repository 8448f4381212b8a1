"""The package's shape: a Detectron2-free core that imports and trains without Detectron2, no
import cycles, small modules."""

import ast
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Dict, List, Set

PACKAGE = Path(__file__).resolve().parents[1] / "vos_det"
#: The packages and modules that must work with plain PyTorch: the core, VOS for classifiers,
#: the pretraining, and what tools/train_classifier.py uses besides.
DETECTRON2_FREE = (
    "vos_det.core",
    "vos_det.classification",
    "vos_det.pretraining",
    "vos_det.experiments.seed_statistics",
    "vos_det.utils.seeds",
)
MAX_LINES = 400
#: Python that makes every later ``import detectron2`` fail, as if it were not installed.
BLOCK_DETECTRON2 = textwrap.dedent(
    """
    import sys

    class NoDetectron2:
        def find_spec(self, name, path=None, target=None):
            if name == "detectron2" or name.startswith("detectron2."):
                raise ImportError("detectron2 is blocked in this test")
            return None

    sys.meta_path.insert(0, NoDetectron2())
    """
)


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imported(path: Path, modules: Set[str]) -> Set[str]:
    """The vos_det modules (of ``modules``) and top-level packages a module file imports."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                stem = ".".join(base + ([node.module] if node.module else []))
            else:
                stem = node.module or ""
            targets = [stem] + [f"{stem}.{alias.name}" for alias in node.names]
        else:
            continue
        for target in targets:
            if target in modules:
                found.add(target)
            elif target.split(".")[0] != "vos_det":  # not an imported name of a vos_det module
                found.add(target.split(".")[0])
    return found


def _import_graph() -> Dict[str, Set[str]]:
    """Module name -> what it imports: vos_det module names and other top-level packages."""
    files = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {name: _imported(path, set(files)) for name, path in files.items()}


def test_the_detectron2_free_packages_never_import_detectron2():
    graph = _import_graph()
    offenders = {}
    for name, imports in graph.items():
        if any(name == free or name.startswith(free + ".") for free in DETECTRON2_FREE):
            seen, pending = set(), [name]
            while pending:  # every vos_det module reachable from this one
                module = pending.pop()
                if module in seen:
                    continue
                seen.add(module)
                pending += [m for m in graph.get(module, ()) if m.startswith("vos_det")]
                if "detectron2" in graph.get(module, ()):
                    offenders.setdefault(name, module)
    assert offenders == {}


def _cycles(graph: Dict[str, Set[str]]) -> List[List[str]]:
    """The import cycles of a module graph: strongly connected components (Tarjan) of two or
    more modules. A package and its submodules may import each other (``__init__`` re-exports
    them); that is no cycle."""
    index, low, stack, on_stack, cycles = {}, {}, [], set(), []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for successor in graph.get(node, ()):
            if successor not in index:
                visit(successor)
                low[node] = min(low[node], low[successor])
            elif successor in on_stack:
                low[node] = min(low[node], index[successor])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            modules = [m for m in component if not any(o.startswith(m + ".") for o in graph)]
            if len(modules) > 1:
                cycles.append(sorted(component))

    for node in graph:
        if node not in index:
            visit(node)
    return cycles


def test_the_cycle_finder_finds_a_ring_and_allows_package_reexports():
    ring = {"p.a": {"p.b"}, "p.b": {"p.c"}, "p.c": {"p.a"}, "p.d": {"p.a"}}
    assert _cycles(ring) == [["p.a", "p.b", "p.c"]]
    reexport = {"p": {"p.a"}, "p.a": {"p"}, "p.b": {"p.a"}}
    assert _cycles(reexport) == []


def test_no_import_cycle_among_the_packages_modules():
    graph = {
        name: {m for m in imports if m.startswith("vos_det.")}
        for name, imports in _import_graph().items()
    }
    assert _cycles(graph) == []


def test_no_module_is_over_400_lines():
    lengths = {
        str(path.relative_to(PACKAGE.parent)): len(path.read_text(encoding="utf-8").splitlines())
        for path in PACKAGE.rglob("*.py")
    }
    long = {name: lines for name, lines in lengths.items() if lines > MAX_LINES}
    assert long == {}


def test_classification_imports_trains_and_scores_with_detectron2_blocked():
    """In a fresh interpreter whose every ``import detectron2`` fails: the core, VOS for
    classifiers and the pretraining import; a classifier trains one step and computes every
    score; the Detectron2 names of ``vos_det`` say what to install."""
    code = textwrap.dedent(
        """
        import torch
        import vos_det
        from vos_det.classification import (
            CLASSIFIER_SCORES, SmallCNN, TrainingConfig, VOSClassifierConfig, build_classifier,
            train_classifier,
        )
        import vos_det.pretraining.corpus, vos_det.pretraining.weights

        config = VOSClassifierConfig(bottleneck_dim=8, queue_size=8, num_candidates=50)
        model = build_classifier(3, config, seed=0, width=4)
        images, labels = torch.rand(12, 3, 16, 16), torch.arange(12) % 3
        history = train_classifier(model, images, labels, TrainingConfig(epochs=1, batch_size=12))
        model.eval()
        with torch.no_grad():
            scores = model.scores(*model(images))
        assert sorted(scores) == sorted(CLASSIFIER_SCORES), sorted(scores)
        assert all(s.shape == (12,) and torch.isfinite(s).all() for s in scores.values())
        assert "detectron2" not in sys.modules
        try:
            vos_det.add_vos_config
        except ImportError as error:
            assert "make setup" in str(error) and "install_detectron2.py" in str(error), error
        else:
            raise AssertionError("vos_det.add_vos_config did not say Detectron2 is missing")
        print("ok", round(history[0]["loss_cls"], 3))
        """
    )
    result = subprocess.run([sys.executable, "-c", BLOCK_DETECTRON2 + code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.startswith("ok ")


def test_the_classifier_tool_runs_with_detectron2_blocked(tmp_path):
    code = textwrap.dedent(
        f"""
        import runpy
        sys.argv = ["train_classifier.py", "--quick", "--output-dir", {str(tmp_path / "out")!r},
                    "--data-root", {str(tmp_path / "data")!r}, "--seeds", "1"]
        try:
            runpy.run_path({str(PACKAGE.parent / "tools" / "train_classifier.py")!r}, run_name="__main__")
        except SystemExit as exit:
            assert not exit.code, exit.code
        assert "detectron2" not in sys.modules
        """
    )
    result = subprocess.run([sys.executable, "-c", BLOCK_DETECTRON2 + code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "out" / "report.md").is_file()
