"""Per-iteration cost of VOS outlier synthesis: the reference algorithm against ours, in one run.

Usage::

    python benchmarks/bench_outlier_synthesis.py [--classes 20 --capacity 1000 --dim 1024
        --candidates 10000 --select 1 --boxes 256 --reference-classes 2]

The reference, each training iteration, recomputes the class means and the pooled covariance
from the full queues, then for every class draws ``--candidates`` full samples of
``N(mu_k, Sigma)`` and keeps the ``--select`` least likely. Its sampling is timed two ways, both
on ``--reference-classes`` classes and scaled linearly to ``--classes``:

- as the reference code does it: ``MultivariateNormal(mu_k, covariance_matrix=Sigma + eps I)``,
  ``rsample``, ``log_prob``, ``topk`` per class;
- our brute-force oracle ``sample_virtual_outliers_bruteforce``: the same algorithm with the
  candidates drawn by one matrix product per class (isolates the algorithmic gain).

Ours reads the means and covariance from running statistics, factorises the covariance once
(``robust_cholesky``) and draws the tail order statistics directly (``sample_virtual_outliers``).
The queue push of ``--boxes`` foreground features is compared with the reference's per-box
concatenation. Prints a table; it is not a test.
"""

import argparse
import os
import statistics
import time
from typing import Callable

import torch

from vos_det.core.linalg import robust_cholesky
from vos_det.core.queues import ClassFeatureQueues
from vos_det.core.virtual_outliers import (
    sample_virtual_outliers,
    sample_virtual_outliers_bruteforce,
)

EPS = 1e-4  # the covariance ridge of the reference and of ClassFeatureQueues


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--classes", type=int, default=20, help="K, number of ID classes")
    parser.add_argument("--capacity", type=int, default=1000, help="Q, queue length per class")
    parser.add_argument("--dim", type=int, default=1024, help="d, box feature dimension")
    parser.add_argument("--candidates", type=int, default=10000, help="samples drawn per class")
    parser.add_argument("--select", type=int, default=1, help="outliers kept per class")
    parser.add_argument("--boxes", type=int, default=256, help="foreground boxes per push")
    parser.add_argument(
        "--reference-classes", type=int, default=2, help="classes the reference sampler is run on"
    )
    parser.add_argument("--repeats", type=int, default=20, help="timed repeats of our steps")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--threads", type=int, default=None, help="torch intra-op threads (default: torch's)"
    )
    return parser.parse_args()


def median_ms(function: Callable[[], object], repeats: int) -> float:
    """Median wall time of ``function()`` in milliseconds, after one warm-up call."""
    function()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def single_ms(function: Callable[[], object]) -> float:
    """Wall time of one ``function()`` call in milliseconds (for the slow reference steps)."""
    start = time.perf_counter()
    function()
    return 1e3 * (time.perf_counter() - start)


def random_features(labels: torch.Tensor, dim: int, generator: torch.Generator) -> torch.Tensor:
    """[N, d] float32 post-ReLU-like features around a fixed mean per class, for [N] labels."""
    class_means = torch.randn(
        int(labels.max()) + 1, dim, generator=torch.Generator().manual_seed(1)
    )
    return torch.relu(class_means[labels] + torch.randn(len(labels), dim, generator=generator))


def filled_queues(args: argparse.Namespace, generator: torch.Generator) -> ClassFeatureQueues:
    """Queues holding ``capacity`` vectors for every class (the steady state of training)."""
    queues = ClassFeatureQueues(args.classes, args.capacity, args.dim, eps=EPS)
    labels = torch.arange(args.classes).repeat_interleave(args.capacity)
    features = random_features(labels, args.dim, generator)
    for chunk in torch.arange(len(labels)).split(4096):
        queues.push(features[chunk], labels[chunk])
    return queues


def reference_statistics(queues: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """The reference's per-iteration fit: per-class means, then the pooled covariance (float32)."""
    means = torch.stack([queue.mean(0) for queue in queues])
    centred = torch.cat([queue - mean for queue, mean in zip(queues, means)])
    return means, centred.T @ centred / len(centred)


def reference_sampling(mean: torch.Tensor, cov: torch.Tensor, args) -> torch.Tensor:
    """The reference code's sampling for one class: [select, d] least likely of the candidates."""
    ridge = EPS * torch.eye(len(cov), dtype=cov.dtype)
    gaussian = torch.distributions.MultivariateNormal(mean, covariance_matrix=cov + ridge)
    candidates = gaussian.rsample((args.candidates,))
    return candidates[torch.topk(-gaussian.log_prob(candidates), args.select).indices]


def reference_push(queues: list[torch.Tensor], features: torch.Tensor, labels: torch.Tensor):
    """The reference's queue update: one concatenation per foreground box."""
    for feature, label in zip(features, labels.tolist()):
        queues[label] = torch.cat((queues[label][1:], feature[None]))


def time_reference(args, queues: ClassFeatureQueues, features, labels) -> dict[str, float]:
    """Milliseconds per iteration of the reference's steps (sampling scaled to all classes)."""
    lists = [queues.class_features(k).clone() for k in range(args.classes)]
    timings = {"push": median_ms(lambda: reference_push(lists, features, labels), 3)}
    timings["statistics"] = median_ms(lambda: reference_statistics(lists), 1)
    means, cov = reference_statistics(lists)
    generator = torch.Generator().manual_seed(args.seed)
    classes = range(args.reference_classes)
    scale = args.classes / args.reference_classes
    as_written = single_ms(lambda: [reference_sampling(means[k], cov, args) for k in classes])
    # One oracle call per class, so that each class pays a factorisation like the reference.
    oracle = single_ms(
        lambda: [
            sample_virtual_outliers_bruteforce(
                means[k : k + 1], cov, args.candidates, args.select, generator, EPS
            )
            for k in classes
        ]
    )
    timings["sampling"] = as_written * scale
    timings["sampling_oracle"] = oracle * scale
    return timings


def time_ours(args, queues: ClassFeatureQueues, features, labels) -> dict[str, float]:
    """Milliseconds per iteration of our steps."""
    generator = torch.Generator().manual_seed(args.seed)
    cov = queues.covariance()
    means = queues.class_means()

    def sample():
        sample_virtual_outliers(means, cov, args.candidates, args.select, generator, EPS)

    return {
        "push": median_ms(lambda: queues.push(features, labels), args.repeats),
        "statistics": median_ms(lambda: (queues.class_means(), queues.covariance()), args.repeats),
        "cholesky": median_ms(lambda: robust_cholesky(cov, EPS), args.repeats),
        "sampling": median_ms(sample, args.repeats),
    }


def print_table(args, reference: dict[str, float], ours: dict[str, float]) -> None:
    row = "{:<66} {:>12} {:>9} {:>9}"
    rule = "-" * 99
    print(row.format("step (ms per iteration)", "reference", "ours", "speed-up"))
    print(rule)

    def line(name: str, ref_ms: float, our_ms: float) -> None:
        print(row.format(name, f"{ref_ms:,.1f}", f"{our_ms:,.2f}", f"{ref_ms / our_ms:,.0f}x"))

    scaled = f"{args.classes} classes, scaled from {args.reference_classes}"
    line("class means + shared covariance", reference["statistics"], ours["statistics"])
    line(f"sampling, reference code ({scaled})", reference["sampling"], ours["sampling"])
    line(f"sampling, brute-force oracle ({scaled})", reference["sampling_oracle"], ours["sampling"])
    print(
        row.format(
            "  of which robust_cholesky (ours: once for all classes)",
            "",
            f"{ours['cholesky']:,.2f}",
            "",
        )
    )
    synthesis_ours = ours["statistics"] + ours["sampling"]
    synthesis_ref = reference["statistics"] + reference["sampling"]
    synthesis_oracle = reference["statistics"] + reference["sampling_oracle"]
    line("synthesis = statistics + sampling, reference code", synthesis_ref, synthesis_ours)
    line("synthesis = statistics + sampling, brute-force oracle", synthesis_oracle, synthesis_ours)
    line(f"queue push, {args.boxes} foreground boxes", reference["push"], ours["push"])
    overhead = synthesis_ours + ours["push"]
    line(
        "per iteration = push + synthesis (reference code)",
        synthesis_ref + reference["push"],
        overhead,
    )
    print(rule)
    print(
        f"synthesis speed-up: {synthesis_ref / synthesis_ours:,.0f}x over the reference code, "
        f"{synthesis_oracle / synthesis_ours:,.0f}x over the brute-force oracle (target >= 1000x)"
    )
    print(f"our per-iteration overhead: {overhead:.1f} ms (target < 50 ms)")


def main() -> None:
    args = parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs; "
        f"K={args.classes}, Q={args.capacity}, d={args.dim}, candidates={args.candidates}, "
        f"select={args.select}, boxes={args.boxes}"
    )
    torch.manual_seed(args.seed)  # MultivariateNormal.rsample draws from the global generator
    generator = torch.Generator().manual_seed(args.seed)
    queues = filled_queues(args, generator)
    labels = torch.randint(0, args.classes, (args.boxes,), generator=generator)
    features = random_features(labels, args.dim, generator)
    reference = time_reference(args, queues, features, labels)
    ours = time_ours(args, queues, features, labels)
    print(
        f"reference: float32 like the reference code, sampling timed once on "
        f"{args.reference_classes} classes and scaled linearly to {args.classes}; "
        f"ours: float64 statistics, medians of {args.repeats} runs."
    )
    print_table(args, reference, ours)


if __name__ == "__main__":
    main()
