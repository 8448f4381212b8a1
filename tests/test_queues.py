"""ClassFeatureQueues against a one-at-a-time pure-Python FIFO model and numpy statistics."""

import numpy as np
import pytest
import torch

from vos_det.core.queues import ClassFeatureQueues

NEVER = 10**9  # recompute_every that keeps the statistics purely incremental


class ReferenceQueues:
    """The specification: one Python list per class, append one vector at a time, drop oldest."""

    def __init__(self, num_classes: int, capacity: int, dim: int):
        self.capacity = capacity
        self.dim = dim
        self.queues = [[] for _ in range(num_classes)]

    def push(self, features: torch.Tensor, labels: torch.Tensor) -> None:
        for feature, label in zip(features, labels.tolist()):
            queue = self.queues[label]
            queue.append(feature.float().numpy())
            if len(queue) > self.capacity:
                queue.pop(0)

    def class_features(self, k: int) -> np.ndarray:
        return np.array(self.queues[k], dtype=np.float32).reshape(-1, self.dim)

    def means_and_covariance(self, eps: float) -> tuple[np.ndarray, np.ndarray]:
        """Per-class means (zero when empty) and pooled within-class covariance + eps I."""
        means, centred = [], []
        for k in range(len(self.queues)):
            x = self.class_features(k).astype(np.float64)
            means.append(x.mean(0) if len(x) else np.zeros(self.dim))
            centred.append(x - means[-1])
        centred = np.concatenate(centred)
        scatter = centred.T @ centred
        return np.array(means), scatter / len(centred) + eps * np.eye(self.dim)


def _random_push(rng: np.random.Generator, num_classes: int, dim: int, max_boxes: int):
    """A push of 0..max_boxes vectors whose labels favour a random class (to overflow queues)."""
    num_boxes = int(rng.integers(0, max_boxes + 1))
    favourite = rng.integers(num_classes)
    labels = np.where(
        rng.random(num_boxes) < 0.6, favourite, rng.integers(num_classes, size=num_boxes)
    )
    features = rng.normal(loc=3.0, scale=2.0, size=(num_boxes, dim))
    return torch.tensor(features, dtype=torch.float32), torch.tensor(labels, dtype=torch.int64)


def _filled_queues(seed: int = 0, num_pushes: int = 60, recompute_every: int = NEVER):
    torch.manual_seed(seed)
    queues = ClassFeatureQueues(4, 9, 5, recompute_every=recompute_every)
    rng = np.random.default_rng(seed)
    for _ in range(num_pushes):
        queues.push(*_random_push(rng, 4, 5, 30))
    return queues


def test_contents_and_statistics_match_reference_model():
    num_classes, capacity, dim, eps = 5, 7, 4, 1e-3
    queues = ClassFeatureQueues(num_classes, capacity, dim, eps=eps, recompute_every=NEVER)
    reference = ReferenceQueues(num_classes, capacity, dim)
    rng = np.random.default_rng(0)
    saw_overflow = False
    for step in range(150):
        features, labels = _random_push(rng, num_classes, dim, max_boxes=25)
        saw_overflow |= bool((torch.bincount(labels, minlength=num_classes) > capacity).any())
        queues.push(features, labels)
        reference.push(features, labels)
        expected_counts = [len(q) for q in reference.queues]
        assert queues.fill_counts().tolist() == expected_counts, f"push {step}"
        for k in range(num_classes):
            np.testing.assert_array_equal(
                queues.class_features(k).numpy(), reference.class_features(k), f"push {step}"
            )
        if all(expected_counts):
            means, cov = reference.means_and_covariance(eps)
            np.testing.assert_allclose(queues.class_means().numpy(), means, rtol=1e-9, atol=1e-12)
            np.testing.assert_allclose(queues.covariance().numpy(), cov, rtol=1e-9, atol=1e-12)
    assert saw_overflow, "the random pushes should include pushes larger than capacity"
    assert queues.all_ready()


def test_push_larger_than_capacity_keeps_last_vectors_in_order():
    queues = ClassFeatureQueues(2, 3, 1)
    queues.push(torch.tensor([[1.0], [2.0]]), torch.tensor([0, 0]))
    queues.push(torch.arange(10.0, 18.0)[:, None], torch.tensor([0, 1, 0, 1, 0, 0, 1, 1]))
    assert queues.class_features(0).flatten().tolist() == [12.0, 14.0, 15.0]
    assert queues.class_features(1).flatten().tolist() == [13.0, 16.0, 17.0]
    assert queues.heads.tolist() == [0, 1]


def test_incremental_statistics_match_exact_recomputation():
    queues = ClassFeatureQueues(6, 30, 16, recompute_every=NEVER)
    rng = np.random.default_rng(1)
    for _ in range(150):  # each class's queue wraps around about 20 times
        queues.push(*_random_push(rng, 6, 16, 80))
    incremental = (queues.class_sums.clone(), queues.outer_sum.clone(), queues.covariance())
    queues.recompute_statistics()
    exact = (queues.class_sums, queues.outer_sum, queues.covariance())
    for got, want in zip(incremental, exact):
        torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-9 * float(want.abs().max()))


def test_statistics_are_recomputed_on_schedule():
    queues = _filled_queues(num_pushes=6, recompute_every=3)  # the 6th push recomputes
    after_push = (queues.class_sums.clone(), queues.outer_sum.clone())
    queues.recompute_statistics()
    assert torch.equal(after_push[0], queues.class_sums)
    assert torch.equal(after_push[1], queues.outer_sum)


def test_state_dict_round_trip_restores_buffers_and_statistics():
    queues = _filled_queues()
    restored = ClassFeatureQueues(4, 9, 5, recompute_every=NEVER)
    restored.load_state_dict(queues.state_dict())
    for name, buffer in queues.named_buffers():
        restored_buffer = dict(restored.named_buffers())[name]
        assert restored_buffer.dtype == buffer.dtype and torch.equal(restored_buffer, buffer), name
    assert torch.equal(restored.covariance(), queues.covariance())
    assert torch.equal(restored.class_means(), queues.class_means())
    features, labels = torch.randn(12, 5), torch.randint(0, 4, (12,))
    queues.push(features, labels)
    restored.push(features, labels)
    assert torch.equal(restored.features, queues.features)
    assert torch.equal(restored.outer_sum, queues.outer_sum)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_input_is_stored_as_float32(dtype):
    queues = ClassFeatureQueues(2, 4, 3)
    features = torch.randn(5, 3, requires_grad=True).to(dtype)
    queues.push(features, torch.tensor([0, 1, 0, 1, 0]))
    assert queues.features.dtype == torch.float32
    torch.testing.assert_close(queues.class_features(0), features[[0, 2, 4]].detach().float())
    torch.testing.assert_close(
        queues.class_means()[1], features[[1, 3]].detach().double().mean(0), rtol=0, atol=1e-12
    )


def test_empty_push_is_a_no_op():
    queues = _filled_queues()
    before = {name: buffer.clone() for name, buffer in queues.named_buffers()}
    queues.push(torch.zeros(0, 5), torch.zeros(0, dtype=torch.int64))
    for name, buffer in queues.named_buffers():
        assert torch.equal(buffer, before[name]), name


def test_readiness_and_empty_classes():
    queues = ClassFeatureQueues(3, 4, 2, eps=0.5)
    assert not queues.all_ready(min_count=1)
    torch.testing.assert_close(queues.covariance(), 0.5 * torch.eye(2, dtype=torch.float64))
    queues.push(torch.tensor([[1.0, 0.0], [3.0, 0.0], [5.0, 5.0]]), torch.tensor([0, 0, 2]))
    assert queues.ready_classes(min_count=1).tolist() == [True, False, True]
    assert queues.ready_classes(min_count=2).tolist() == [True, False, False]
    assert queues.ready_classes().tolist() == [False, False, False]
    assert queues.all_ready(min_count=0)
    torch.testing.assert_close(
        queues.class_means(), torch.tensor([[2.0, 0.0], [0.0, 0.0], [5.0, 5.0]]).double()
    )
    # Scatter: class 0 contributes (+-1, 0) twice, class 2 nothing; three vectors in all.
    expected = torch.tensor([[2.0 / 3 + 0.5, 0.0], [0.0, 0.5]]).double()
    torch.testing.assert_close(queues.covariance(), expected)


@pytest.mark.parametrize(
    "features, labels, message",
    [
        (torch.zeros(3, 4), torch.zeros(3, dtype=torch.int64), r"shape \[N, 5\]"),
        (torch.zeros(3, 5), torch.zeros(2, dtype=torch.int64), r"labels must have shape \[3\]"),
        (torch.zeros(2, 5), torch.zeros(2), "int64"),
        (torch.zeros(2, 5), torch.tensor([0, 4]), r"out of range \[0, 4\)"),
        (torch.zeros(2, 5), torch.tensor([-1, 0]), "out of range"),
        (torch.tensor([[float("nan")] * 5]), torch.tensor([0]), "NaN"),
        (torch.zeros(2, 5, dtype=torch.int64), torch.tensor([0, 1]), "floating point"),
    ],
)
def test_push_rejects_bad_input(features, labels, message):
    with pytest.raises(ValueError, match=message):
        ClassFeatureQueues(4, 3, 5).push(features, labels)


def test_rejects_bad_arguments():
    with pytest.raises(ValueError, match="capacity"):
        ClassFeatureQueues(4, 0, 5)
    queues = ClassFeatureQueues(4, 3, 5)
    with pytest.raises(ValueError, match="min_count"):
        queues.ready_classes(min_count=4)
    with pytest.raises(ValueError, match="class index"):
        queues.class_features(4)
