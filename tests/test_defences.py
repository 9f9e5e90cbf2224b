"""Defences: reverse sigmoid against Lee et al.'s formula and IBM ART's description, noise,
specs, the black box; every default on the digits world. MAD: test_mad.py; adaptive
misinformation: test_misinformation.py."""
import gymnasium as gym
import mpmath
import numpy as np
import pytest
import torch
from conftest import LinearNet
from torch import nn

import knockoff_env  # noqa: F401  (registers the ids)
from knockoff_env import BlackBox
from knockoff_env.victim.defences import (
    DEFENCES,
    MAD,
    Chain,
    Noise,
    ReverseSigmoid,
    TopK,
    parse_defence,
)


def rows(*values):
    return torch.tensor(values, dtype=torch.float32)


def test_reverse_sigmoid_by_hand():
    y = rows([0.7, 0.2, 0.1])
    # γ = 1: σ(σ⁻¹(y)) = y, so ỹ ∝ y − β(y − ½) = ½y + ¼ for β = ½
    out = ReverseSigmoid(beta=0.5, gamma=1.0)(y, None)
    np.testing.assert_allclose(out.numpy(), [[0.6 / 1.25, 0.35 / 1.25, 0.3 / 1.25]], atol=1e-6)
    # γ = 2: σ(2 σ⁻¹(y)) = y² / (y² + (1 − y)²); β = 1
    s = [0.49 / 0.58, 0.04 / 0.68, 0.01 / 0.82]
    raw = [0.7 - (s[0] - 0.5), 0.2 - (s[1] - 0.5), 0.1 - (s[2] - 0.5)]
    out = ReverseSigmoid(beta=1.0, gamma=2.0)(y, None)
    np.testing.assert_allclose(out.numpy(), [np.array(raw) / sum(raw)], atol=1e-6)
    assert out.argmax(1).item() == 1  # deceptive: the top-1 moved


def confident_answers(n=64, k=10, seed=0):
    """Softmax answers of a trained victim's kind: most entries far below 1e-7, some below 1e-9."""
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, k, generator=g) * torch.linspace(0.5, 12, n)[:, None]
    return torch.softmax(logits, 1)


def lee_oracle(y, beta, gamma):
    """Lee et al.'s formula, entry by entry in 60-digit arithmetic on the answer's numbers."""
    mpmath.mp.dps = 60
    out = []
    for row in y.double().tolist():
        raw = []
        for p in map(mpmath.mpf, row):
            logit = mpmath.log(p) - mpmath.log(1 - p) if 0 < p < 1 else (mpmath.inf if p == 1 else -mpmath.inf)
            squash = 1 / (1 + mpmath.exp(-gamma * logit)) if mpmath.isfinite(logit) else (1 if logit > 0 else 0)
            raw.append(p - beta * (squash - mpmath.mpf(1) / 2))  # in [0, 1] for β ≤ 1
        out.append([float(r / sum(raw)) for r in raw])
    return np.array(out)


def art_oracle(y, beta, gamma):
    """IBM ART's ReverseSigmoid as its documentation and code describe it: y clamped to
    [1e-9, 1 − 1e-9] inside the logit, perturbed values clipped to [0, 1], renormalised."""
    y = y.double().numpy()
    clamped = np.clip(y, 1e-9, 1 - 1e-9)
    perturbed = np.clip(y - beta * (1 / (1 + np.exp(-gamma * np.log(clamped / (1 - clamped)))) - 0.5), 0, 1)
    return perturbed / perturbed.sum(1, keepdims=True)


@pytest.mark.parametrize("beta, gamma", [(0.7, 0.2), (1.0, 0.1), (0.5, 2.0)])
def test_reverse_sigmoid_equals_lee_et_al_on_confident_answers(beta, gamma):
    y = confident_answers()
    assert (y < 1e-7).double().mean() > 0.2 and (y < 1e-9).any()
    ours = ReverseSigmoid(beta, gamma)(y, None)
    assert ours.dtype == torch.float32
    np.testing.assert_allclose(ours.double().numpy(), lee_oracle(y, beta, gamma), rtol=0, atol=1e-7)
    if gamma >= 1:
        return
    # the old clamp at 1e-7 inside the logit: a visible error on the same answers
    clamped = y.double().clamp(1e-7, 1 - 1e-7)
    old = (y - beta * (torch.sigmoid(gamma * torch.logit(clamped)) - 0.5)).clamp_min(0)
    old = old / old.sum(1, keepdim=True)
    assert np.abs(old.numpy() - lee_oracle(y, beta, gamma)).max() > 5e-3


def test_reverse_sigmoid_equals_ibm_art_where_its_clamp_does_not_bite():
    y = confident_answers(seed=1)
    inside = ((y >= 1e-9) & (y <= 1 - 1e-9)).all(1)
    assert inside.any() and not inside.all()
    for beta, gamma in [(1.0, 0.1), (2.5, 0.5)]:  # ART's defaults; and β > 1, where both clip at 0
        ours = ReverseSigmoid(beta, gamma)(y, None).double().numpy()
        art = art_oracle(y, beta, gamma)
        np.testing.assert_allclose(ours[inside.numpy()], art[inside.numpy()], atol=1e-6)
        if beta <= 1:  # ART's clamp at 1e-9 changes answers with smaller entries
            assert np.abs(ours[~inside.numpy()] - art[~inside.numpy()]).max() > 1e-3


def test_noise_by_hand_and_reproducible_per_query():
    noise = Noise(sigma=0.5, seed=3)
    out = noise.perturb(rows([0.5, 0.3, 0.2]), rows([0.2, -0.8, 0.1]))
    np.testing.assert_allclose(out.numpy(), [[0.6 / 0.85, 0.0, 0.25 / 0.85]], atol=1e-6)
    g = torch.Generator().manual_seed(0)
    y, images = torch.softmax(torch.randn(6, 4, generator=g), 1), torch.rand(6, 1, 8, 8, generator=g)
    whole = noise(y, images)
    split = torch.cat([noise(y[:2], images[:2]), noise(y[2:], images[2:])])
    assert torch.equal(whole, split)  # an image's noise depends on the image, not on the batch
    assert torch.equal(noise(y[[0, 0]], images[[3, 3]]), noise(y[[0, 0]], images[[3, 3]]))
    others = noise(y, images.roll(1, 0))
    assert not torch.allclose(whole, others)
    assert not torch.allclose(whole, Noise(sigma=0.5, seed=4)(y, images))
    assert (whole >= 0).all() and torch.allclose(whole.sum(1), torch.ones(6))


def test_specs_parse_to_chains_and_bad_specs_are_explained():
    chain = parse_defence("mad:eps=0.5+top_k:k=1")
    assert [type(d) for d in chain.defences] == [MAD, TopK] and chain.defences[0].eps == 0.5
    assert parse_defence(["reverse_sigmoid:beta=0.7,gamma=0.2", TopK(2)]).spec() == \
        "reverse_sigmoid:beta=0.7,gamma=0.2+top_k:k=2"
    assert parse_defence("mad_argmax:eps=0.3").defences[0].target == "argmax"
    assert parse_defence("mad_argmax_vertex").defences[0].target == "argmax_vertex"
    assert not parse_defence(None)
    with pytest.raises(ValueError, match="unknown defence 'madd'"):
        parse_defence("madd:eps=1")
    with pytest.raises(ValueError, match="bad parameter 'epsilon=1'.*eps, seed"):
        parse_defence("mad:epsilon=1")
    with pytest.raises(ValueError, match="beta"):
        parse_defence("reverse_sigmoid:beta=-1")


def test_blackbox_applies_defence_then_output_mode():
    victim = LinearNet(dim=6, classes=3)
    x = torch.randn(5, 6)
    true = torch.softmax(victim(x), 1).detach()
    box = BlackBox(victim, defence="reverse_sigmoid:beta=0.5,gamma=1.0", output="label", device="cpu")
    expected = nn.functional.one_hot((0.5 * true + 0.25).argmax(1), 3).float()
    assert torch.equal(box(x), expected) and box.queries == 5
    assert isinstance(box.defence, Chain) and box.defence.spec() == "reverse_sigmoid:beta=0.5,gamma=1.0+label"
    t, d = box.true_and_defended(x)
    assert torch.allclose(t, true) and torch.equal(d, expected) and box.queries == 5


@pytest.mark.parametrize("name", sorted(DEFENCES))
def test_every_default_keeps_the_victims_accuracy_within_two_points(name):
    """The owner's operating point: each defence at its defaults on the embedded world."""
    env = gym.make("Knockoff-Digits-v0", device="cpu", defence=name).unwrapped
    report = env.evaluate()
    assert report["victim_accuracy"] > 0.95
    assert report["victim_accuracy_defended"] >= report["victim_accuracy"] - 0.02, report
    if name not in ("label", "top_k", "rounded"):
        assert report["defence_l1"] > 0.01  # it does change the answers
