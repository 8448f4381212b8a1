"""Guards on the Detectron2 code vos_det mirrors: a detectron2 update must not diverge silently.

``VOSTrainer._init_for_cpu_processes`` mirrors ``DefaultTrainer.__init__`` and
``VOSROIHeads._forward_box`` mirrors ``StandardROIHeads._forward_box``. Each test compares a
fingerprint of upstream's code (its syntax tree without docstrings and comments) with the one
the mirror was written from. When one fails, read upstream's new code, bring the mirror in line
and record the new fingerprint.
"""

import ast
import hashlib
import inspect
import textwrap

import pytest
from detectron2.engine import DefaultTrainer
from detectron2.modeling.roi_heads import StandardROIHeads


def fingerprint(function) -> str:
    """sha256 of a function's syntax tree, docstring and comments left out."""
    return fingerprint_source(inspect.getsource(function))


def fingerprint_source(source: str) -> str:
    """sha256 of the syntax tree of one function's source, docstring and comments left out."""
    tree = ast.parse(textwrap.dedent(source))
    body = tree.body[0].body
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        body.pop(0)
    return hashlib.sha256(ast.dump(tree).encode()).hexdigest()


@pytest.mark.parametrize(
    "upstream, mirror, expected",
    [
        (
            DefaultTrainer.__init__,
            "vos_det.engine.trainer.VOSTrainer._init_for_cpu_processes",
            "125e669ff935a1b2cfb3ad68de3974f685a98fb64f46547533ecf97a246dcad1",
        ),
        (
            StandardROIHeads._forward_box,
            "vos_det.modeling.roi_heads.VOSROIHeads._forward_box",
            "9e3cb5ce8edc48b7dfd69fd78b5882117a6b56e40d989f15bdf6805b6652dd31",
        ),
    ],
)
def test_mirrored_upstream_code_is_unchanged(upstream, mirror, expected):
    assert fingerprint(upstream) == expected, (
        f"{upstream.__qualname__} changed upstream: update its mirror {mirror} and the "
        "fingerprint in this test."
    )


def test_fingerprint_ignores_docstrings_and_comments_but_not_code():
    plain = "def f(x):\n    return x + 1\n"
    documented = 'def f(x):\n    """Doc."""\n    return x + 1  # comment\n'
    changed = "def f(x):\n    return x + 2\n"
    assert fingerprint_source(plain) == fingerprint_source(documented)
    assert fingerprint_source(plain) != fingerprint_source(changed)
