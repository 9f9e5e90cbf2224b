"""ActiveThief's selection rules on small pools whose right answer is known by hand."""
import numpy as np
import pytest
import torch
from torch import nn

from agents.active.deepfool import deepfool_distances
from agents.active.selection import (
    FetchedPool,
    k_center_greedy,
    knockoff_outputs,
    pool_subsample,
    select,
    select_dfal,
    select_entropy,
    select_margin,
)

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


class Identity3(nn.Module):
    """Logits = the input itself (3 classes), so every probability is known by hand."""

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, x):
        return x * self.scale


def linear(dim: int, classes: int, seed: int) -> nn.Linear:
    torch.manual_seed(seed)
    return nn.Linear(dim, classes)


def boundary_distance(model: nn.Linear, x: torch.Tensor) -> torch.Tensor:
    """Exact L2 distance from each x to the linear classifier's decision boundary:
    min over j ≠ k of |f_j − f_k| / ‖w_j − w_k‖, k the predicted class (the region is convex)."""
    with torch.no_grad():
        f = model(x)
        k = f.argmax(1)
        w = model.weight
        gaps = (f - f.gather(1, k[:, None])).abs()
        norms = (w[None] - w[k][:, None]).norm(dim=2)
        ratio = gaps / norms
        ratio[torch.arange(len(x)), k] = float("inf")
        return ratio.min(1).values


def test_entropy_picks_the_most_uncertain_and_margin_the_smallest_gap():
    images = torch.tensor([[5.0, 0.0, 0.0],     # confident
                           [2.0, 2.0, -10.0],   # two-way tie: margin 0, entropy ln 2
                           [0.5, 0.0, 0.2],     # nearly uniform over 3: the largest entropy
                           [3.0, 1.0, 0.0]])
    model = Identity3()
    probs = knockoff_outputs(model, images)
    assert torch.allclose(probs, images.softmax(1))
    assert select_entropy(probs, 2).tolist() == [2, 1]
    assert select_margin(probs, 2).tolist() == [1, 2]
    assert select("entropy", model, images, 1).tolist() == [2]
    assert select("margin", model, images, 1).tolist() == [1]


def brute_force_k_center(points: np.ndarray, centres: np.ndarray, k: int) -> list[int]:
    """ActiveThief's way: every round, all distances to all centres again."""
    chosen, centres = [], list(centres)
    for _ in range(k):
        d = np.array([min(np.linalg.norm(p - c) for c in centres) for p in points])
        d[chosen] = -1
        chosen.append(int(d.argmax()))
        centres.append(points[chosen[-1]])
    return chosen


@pytest.mark.parametrize("device", DEVICES)
def test_k_center_takes_the_farthest_point_each_time(device):
    line = torch.tensor([[1.0], [5.0], [10.0], [4.0]], device=device)
    # from centre 0: 10 is farthest; then 5 (5 from both 0 and 10) beats 4 (4 from 0)
    assert k_center_greedy(line, torch.zeros(1, 1, device=device), 2).tolist() == [2, 1]
    rng = np.random.default_rng(0)
    points, centres = rng.normal(size=(60, 3)), rng.normal(size=(5, 3))
    got = k_center_greedy(torch.tensor(points, device=device), torch.tensor(centres, device=device), 12)
    assert got.tolist() == brute_force_k_center(points, centres, 12)


def test_k_center_without_centres_starts_far_from_the_mean_and_never_repeats():
    points = torch.tensor([[0.0, 0.0], [0.1, 0.0], [9.0, 9.0], [0.0, 0.1]])
    assert k_center_greedy(points, None, 1).tolist() == [2]
    twins = torch.zeros(5, 2)  # every distance 0: still five different points
    assert sorted(k_center_greedy(twins, torch.zeros(1, 2), 5).tolist()) == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError, match="k=6 images cannot be chosen from a pool of 5"):
        k_center_greedy(twins, None, 6)


def test_k_center_uses_the_knockoffs_outputs_on_the_queried_images_as_centres():
    model = Identity3()
    queried = torch.tensor([[4.0, 0.0, 0.0]])  # the knockoff already "knows" class 0
    images = torch.tensor([[4.0, 0.1, 0.0], [0.0, 0.0, 4.0], [4.1, 0.0, 0.0]])
    assert select("k-center", model, images, 1, queried=queried).tolist() == [1]


@pytest.mark.parametrize("device", DEVICES)
def test_deepfool_is_exact_for_a_linear_knockoff_and_dfal_picks_the_point_nearest_the_boundary(device):
    model = linear(8, 5, seed=0).to(device)
    x = torch.randn(40, 8, generator=torch.Generator().manual_seed(1)) * 2
    exact = boundary_distance(model.cpu(), x)
    model.to(device)
    distance, changed = deepfool_distances(model, x.to(device), batch_size=16, overshoot=0.01)
    assert changed.all()
    # one step lands on the nearest face (+10⁻⁴/‖w‖ past it), then the overshoot
    assert torch.allclose(distance, 1.01 * exact, rtol=1e-3, atol=1e-3)
    assert select_dfal(distance, changed, 3).tolist() == exact.argsort()[:3].tolist()
    assert select("dfal", model, x.to(device), 1).tolist() == [int(exact.argmin())]


def test_deepfool_variants_never_beat_the_exact_distance_and_still_cross():
    """On the softmax (ActiveThief's choice) or with fewer candidate classes the perturbation
    found still changes the prediction, and it cannot be shorter than the true distance."""
    model = linear(6, 12, seed=2)
    x = torch.randn(30, 6, generator=torch.Generator().manual_seed(3))
    exact = boundary_distance(model, x)
    for options in ({"on": "probs"}, {"candidates": 3}):
        distance, changed = deepfool_distances(model, x, **options)
        assert changed.float().mean() > 0.9
        assert (distance[changed] >= exact[changed] * (1 - 1e-4)).all()


def test_deepfool_crosses_a_nonlinear_boundary_and_unchanged_images_rank_last():
    torch.manual_seed(4)
    model = nn.Sequential(nn.Linear(5, 16), nn.Tanh(), nn.Linear(16, 4))
    x = torch.randn(25, 5)
    distance, changed = deepfool_distances(model, x, max_iter=50)
    assert changed.all()
    distance[3], changed[3] = 0.0, False  # a tiny lower bound that never changed the prediction
    assert 3 not in select_dfal(distance, changed, 24).tolist()


def test_dfal_k_center_picks_spread_points_among_the_nearest_to_the_boundary():
    model = linear(4, 3, seed=5)
    x = torch.randn(50, 4, generator=torch.Generator().manual_seed(6))
    exact = boundary_distance(model, x)
    near = set(exact.argsort()[:10].tolist())
    picked = select("dfal-k-center", model, x, 4, keep=10)
    assert len(set(picked.tolist())) == 4 and set(picked.tolist()) <= near
    assert set(select("dfal-k-center", model, x, 10, keep=10).tolist()) == near
    with pytest.raises(ValueError, match="dfal-k-center needs keep"):
        select("dfal-k-center", model, x, 4)


def test_scoring_leaves_the_knockoff_in_its_mode_and_reads_a_fetched_pool_in_batches():
    model = nn.Sequential(nn.Linear(3, 8), nn.Dropout(0.5), nn.Linear(8, 3))
    model.train()
    images = torch.randn(70, 3, generator=torch.Generator().manual_seed(7))
    asked = []

    def fetch(index):
        asked.append(len(index))
        return images[torch.from_numpy(index)]

    pool = FetchedPool(fetch, np.arange(70))
    for rule in ("entropy", "margin", "k-center", "dfal"):
        assert select(rule, model, pool, 5, batch_size=32, dfal_batch_size=16).tolist() == \
            select(rule, model, images, 5).tolist()
    assert model.training and max(asked) <= 32
    assert torch.equal(knockoff_outputs(model, images), knockoff_outputs(model, images))  # eval: no dropout


def test_pool_subsample_is_uniform_without_repeats_and_whole_when_small():
    assert pool_subsample(50, 100).tolist() == list(range(50))
    sample = pool_subsample(1_000_000, 10_000, np.random.default_rng(0))
    assert len(np.unique(sample)) == 10_000 and np.all(np.diff(sample) > 0) and sample.max() < 1_000_000
    assert abs(sample.mean() - 500_000) < 15_000  # uniform: mean within ~5 standard errors
    with pytest.raises(ValueError, match="unknown selection rule 'bald'"):
        select("bald", Identity3(), torch.zeros(2, 3), 1)
