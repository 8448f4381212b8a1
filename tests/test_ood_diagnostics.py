"""The report's diagnostics against hand-counted cases."""

import math

import numpy as np
import pytest

from markdown_tables import markdown_tables
from vos_det.experiments.diagnostics_report import diagnostics_tables
from vos_det.experiments.ood_diagnostics import (
    FRAGMENT,
    assign_ood_classes,
    ood_class_breakdown,
    unmatched_share,
)

OBJECTS = {  # image 1: a star at 0-10 and a ring at 20-30; image 2: a cross; image 3: nothing
    "image_id": np.array([1, 1, 2]),
    "box": np.array([[0, 0, 10, 10], [20, 20, 30, 30], [0, 0, 20, 20]], dtype=float),
    "class": np.array([0, 1, 2]),
}
NAMES = ["star", "ring", "cross"]


def test_kept_id_boxes_matching_no_object_are_counted():
    kept = {"image_id": np.array([1, 1, 3]), "box": np.array([[0, 0, 10, 9], [40, 40, 50, 50], [0, 0, 5, 5]], float)}
    assert unmatched_share(kept, OBJECTS) == pytest.approx(200 / 3)
    assert math.isnan(unmatched_share({"image_id": np.zeros(0), "box": np.zeros((0, 4))}, OBJECTS))


def test_each_kept_ood_box_takes_the_object_it_covers_or_is_a_fragment():
    kept = {
        "image_id": np.array([1, 1, 1, 2, 3]),
        "box": np.array(
            [[0, 0, 10, 10], [21, 21, 30, 30], [0, 0, 10, 4], [0, 0, 14, 14], [0, 0, 10, 10]],
            dtype=float,
        ),
    }
    # IoU 1 star; IoU 0.81 ring; IoU 0.4 (a part of the star); IoU 0.49 cross; no object at all.
    classes = assign_ood_classes(kept, OBJECTS, NAMES)
    assert classes.tolist() == ["star", "ring", FRAGMENT, FRAGMENT, FRAGMENT]


def test_breakdown_counts_passing_boxes_per_class_and_their_id_class():
    kept = {
        "pred_class": np.array([0, 1, 1, 0, 2, 2]),
        "energy": np.array([5.0, 1.0, 3.0, 3.0, 0.5, 9.0]),
    }
    classes = np.array(["star", "star", "star", "ring", "ring", FRAGMENT], dtype=object)
    breakdown = ood_class_breakdown(kept, classes, {"energy": 3.0}, ["circle", "square", "tri"])
    star, ring, fragment = (breakdown["energy"][c] for c in ("star", "ring", FRAGMENT))
    assert list(breakdown["energy"]) == ["star", "ring", FRAGMENT]
    assert star["boxes"] == 3 and star["passed"] == pytest.approx(200 / 3)  # a tie passes
    assert star["as"] == pytest.approx({"circle": 100 / 3, "square": 100 / 3, "tri": 0.0})
    assert ring["passed"] == 50.0 and ring["as"]["circle"] == 50.0
    assert fragment["passed"] == 100.0 and fragment["as"]["tri"] == 100.0


def test_tables_average_the_seeds_and_mark_classes_a_method_never_kept():
    def run(passed, unmatched, fragments=True):
        per_class = {"star": {"boxes": 4, "passed": passed, "as": {"circle": passed, "square": 0.0}}}
        if fragments:
            per_class[FRAGMENT] = {"boxes": 2, "passed": 50.0, "as": {"circle": 0.0, "square": 50.0}}
        return {"unmatched_id": unmatched, "ood": {"ood": {"energy": per_class}}}

    per_run = {"vanilla": [run(20.0, 2.0), run(40.0, 4.0)], "vos": [run(10.0, 1.0, fragments=False)]}
    kept, fpr, passes = markdown_tables(diagnostics_tables(per_run, "ood", ["energy"]))
    assert kept == [
        {"method": "vanilla", "kept ID boxes matching no object (%)": "3.0",
         "kept OOD boxes: star": "4", f"kept OOD boxes: {FRAGMENT}": "2"},
        {"method": "vos", "kept ID boxes matching no object (%)": "1.0",
         "kept OOD boxes: star": "4", f"kept OOD boxes: {FRAGMENT}": "-"},
    ]
    assert [(r["method"], r["FPR: star"], r[f"FPR: {FRAGMENT}"]) for r in fpr] == [
        ("vanilla", "30.0", "50.0"),
        ("vos", "10.0", "-"),
    ]
    assert [(r["method"], r["OOD class"], r["passes as circle (%)"]) for r in passes] == [
        ("vanilla", "star", "30.0"),
        ("vanilla", FRAGMENT, "0.0"),
        ("vos", "star", "10.0"),
    ]
    assert diagnostics_tables(per_run, "other", ["energy"]) == ""
