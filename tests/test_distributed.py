"""Two CPU processes through Detectron2's ``launch`` (gloo): queues stay identical with sync."""

import pytest
import torch
from detectron2.engine import launch

from distributed_worker import train_and_dump_queues

pytestmark = pytest.mark.slow


def _run(tmp_path, sync):
    out = tmp_path / ("sync" if sync else "nosync")
    launch(train_and_dump_queues, 2, dist_url="auto", args=(str(tmp_path / "data"), str(out), sync))
    return [torch.load(out / f"rank{r}.pt", weights_only=True) for r in (0, 1)]


def test_synced_queues_are_bit_identical_across_workers(tmp_path):
    rank0, rank1 = _run(tmp_path, sync=True)
    assert rank0["queues"].keys() == rank1["queues"].keys()
    for key in rank0["queues"]:
        assert torch.equal(rank0["queues"][key], rank1["queues"][key]), key
    assert int(rank0["queues"]["counts"].sum()) > 0
    # DDP kept the parameters identical too, and the loss was active on both workers.
    assert torch.equal(rank0["energy_weights"], rank1["energy_weights"])
    assert rank0["active"][-1] == rank1["active"][-1] == 1.0


def test_unsynced_queues_differ_across_workers(tmp_path):
    # The control: without gathering, each worker queues only its own images' features.
    rank0, rank1 = _run(tmp_path, sync=False)
    assert not torch.equal(rank0["queues"]["features"], rank1["queues"]["features"])
