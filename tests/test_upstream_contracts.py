"""Guards on the Detectron2 code vos_det mirrors: a detectron2 update must not diverge silently.

``VOSTrainer._init_for_cpu_processes`` mirrors ``DefaultTrainer.__init__``, and
``VOSROIHeads.forward`` and ``_forward_box`` mirror ``StandardROIHeads``'s. Each test compares a
fingerprint of upstream's code (its tokens without docstring, comments and spacing: the same on
every Python version) with the one the mirror was written from. When one fails, read upstream's
new code, bring the mirror in line and record the new fingerprint.
"""

import ast
import hashlib
import importlib
import inspect
import io
import textwrap
import tokenize

import pytest
from detectron2.engine import DefaultTrainer
from detectron2.modeling.roi_heads import StandardROIHeads


def fingerprint(function) -> str:
    """sha256 of a function's code, docstring, comments and spacing left out."""
    return fingerprint_source(inspect.getsource(function))


def fingerprint_source(source: str) -> str:
    """sha256 of one function's tokens: no docstring, comments, blank lines or indentation
    widths (block structure stays, as INDENT/DEDENT/NEWLINE)."""
    source = textwrap.dedent(source)
    first = ast.parse(source).body[0].body[0]
    docstring = (
        isinstance(first, ast.Expr)
        and isinstance(first.value, ast.Constant)
        and isinstance(first.value.value, str)
    )
    skipped = range(first.lineno, first.end_lineno + 1) if docstring else range(0)
    parts = []
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type in (tokenize.COMMENT, tokenize.NL, tokenize.ENDMARKER):
            continue
        if token.start[0] in skipped and token.type != tokenize.INDENT:
            continue
        structural = token.type in (tokenize.INDENT, tokenize.DEDENT, tokenize.NEWLINE)
        parts.append(tokenize.tok_name[token.type] if structural else token.string)
    return hashlib.sha256(" ".join(parts).encode()).hexdigest()


def _resolve(dotted: str):
    """The object at a dotted path ``package.module.Class.method``."""
    parts = dotted.split(".")
    for split in range(len(parts) - 1, 0, -1):
        try:
            target = importlib.import_module(".".join(parts[:split]))
        except ImportError:
            continue
        for name in parts[split:]:
            target = getattr(target, name)
        return target
    raise ImportError(dotted)


@pytest.mark.parametrize(
    "upstream, mirror, expected",
    [
        (
            DefaultTrainer.__init__,
            "vos_det.engine.trainer.VOSTrainer._init_for_cpu_processes",
            "0f1f95ef9ff872c0d7e0bafb690ea931be67add5c71f8345411f465992f3891c",
        ),
        (
            StandardROIHeads._forward_box,
            "vos_det.modeling.roi_heads.VOSROIHeads._forward_box",
            "ef5647ac7a909e86c936dae1d9bc50372b5ac2ff29e46782729885e43f64d0a0",
        ),
        (
            StandardROIHeads.forward,
            "vos_det.modeling.roi_heads.VOSROIHeads.forward",
            "f9a36c18b3448901fa3e12a3e726652fec322f122fa72f3bf044748fdf813f07",
        ),
    ],
)
def test_mirrored_upstream_code_is_unchanged(upstream, mirror, expected):
    mirrored = _resolve(mirror)
    assert mirrored is not upstream and mirrored.__qualname__.split(".")[-1] in (
        upstream.__name__,
        "_init_for_cpu_processes",
    ), f"{mirror} is not the mirror of {upstream.__qualname__}"
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
