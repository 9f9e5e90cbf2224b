"""Defences: hand-computed answers, MAD's budget and top-1 guarantee on batches, specs."""
import numpy as np
import pytest
import torch
from conftest import LinearNet
from torch import nn

from knockoff_env import BlackBox
from knockoff_env.victim.defences import MAD, AdaptiveMisinformation, Chain, Noise, ReverseSigmoid, TopK, parse_defence


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


def dirichlet_batch(n=512, k=10, seed=0):
    g = torch.Generator().manual_seed(seed)
    concentration = torch.exp(torch.randn(n, 1, generator=g) * 2)  # from near one-hot to near uniform
    gamma = torch._standard_gamma(concentration.expand(n, k).contiguous(), generator=g)
    y = gamma / gamma.sum(1, keepdim=True)
    y[:8] = torch.eye(k)[:8]  # exact vertices
    y[8] = 1 / k               # exact uniform
    return y


@pytest.fixture(scope="module")
def mad_setup():
    torch.manual_seed(0)
    surrogate = LinearNet(dim=12, classes=10)
    images = torch.randn(512, 12, generator=torch.Generator().manual_seed(1))
    return surrogate, images, dirichlet_batch()


@pytest.mark.parametrize("eps", [0.1, 0.5, 1.0, 2.0])
def test_mad_respects_its_budget_on_a_batch(mad_setup, eps):
    surrogate, images, y = mad_setup
    out = MAD(eps=eps, surrogate=surrogate)(y, images)
    l1 = (out - y).abs().sum(1)
    assert (l1 <= eps + 1e-5).all()
    assert (out >= -1e-7).all() and torch.allclose(out.sum(1), torch.ones(len(y)), atol=1e-5)
    # the line search takes the whole budget, or stops at the target vertex if it is nearer
    p = torch.softmax(surrogate(images), 1).detach()
    target = MAD.deviation(torch.eye(10).expand(len(y), 10, 10), y, p).argmax(1)
    expected = torch.minimum(torch.full_like(l1, eps), 2 * (1 - y.gather(1, target[:, None])[:, 0]))
    np.testing.assert_allclose(l1.numpy(), expected.detach().numpy(), atol=1e-4)


@pytest.mark.parametrize("eps", [0.1, 0.5, 1.0, 2.0])
def test_mad_argmax_keeps_every_top1_label(mad_setup, eps):
    surrogate, images, y = mad_setup
    out = MAD(eps=eps, surrogate=surrogate, argmax=True)(y, images)
    assert torch.equal(out.argmax(1), y.argmax(1))
    assert ((out - y).abs().sum(1) <= eps + 1e-5).all()
    assert (out - y).abs().sum(1).mean() > 0.05 * eps  # it does perturb


def test_mad_closed_form_matches_the_autograd_gradient(mad_setup):
    """The angular deviation computed from (y − p) equals the one from G = ∇_w log F(x; w)."""
    surrogate, images, y = mad_setup
    params = dict(surrogate.fc.named_parameters())

    def log_probs(p, x):
        return torch.log_softmax(torch.func.functional_call(surrogate.fc, p, (x[None],)), 1)[0]

    mad = MAD(eps=1.0, surrogate=surrogate)
    p = torch.softmax(surrogate(images[:6]), 1).detach()
    vertices = torch.eye(10).expand(6, 10, 10)
    fast = MAD.deviation(vertices, y[:6], p)
    for i in range(6):
        jac = torch.func.jacrev(log_probs)(params, images[i])  # per parameter: (K, *shape)
        g = torch.cat([j.reshape(10, -1) for j in jac.values()], 1)  # (K, D)

        def unit(v):
            a = g.T @ v
            return a / a.norm()
        slow = torch.stack([(unit(e) - unit(y[i])).pow(2).sum() for e in torch.eye(10)])
        np.testing.assert_allclose(fast[i].numpy(), slow.detach().numpy(), atol=1e-4)
    chosen = mad(y[:6], images[:6])
    assert torch.equal((chosen - y[:6]).argmax(1), fast.argmax(1))  # moved towards the best vertex


def test_mad_default_surrogate_is_a_fresh_copy_of_the_victim():
    victim = LinearNet(dim=6, classes=3)
    box = BlackBox(victim, defence="mad:eps=0.5", device="cpu")
    surrogate = box.defence.defences[0].surrogate
    assert type(surrogate) is LinearNet and surrogate is not victim
    assert not torch.equal(surrogate.fc.weight, victim.fc.weight)
    with pytest.raises(ValueError, match="needs a surrogate"):
        BlackBox(lambda x: torch.full((len(x), 3), 1 / 3), defence="mad")


def test_adaptive_misinformation_by_hand():
    y = rows([0.4, 0.35, 0.25], [0.98, 0.01, 0.01])
    out = AdaptiveMisinformation(tau=0.9, nu=1000)(y, None)
    inverse = np.array([1 / 0.4, 1 / 0.35, 1 / 0.25])
    np.testing.assert_allclose(out[0].numpy(), inverse / inverse.sum(), atol=1e-5)  # α = σ(500) ≈ 1
    np.testing.assert_allclose(out[1].numpy(), y[1].numpy(), atol=1e-5)  # α = σ(−80) ≈ 0


def test_specs_parse_to_chains_and_bad_specs_are_explained():
    chain = parse_defence("mad:eps=0.5+top_k:k=1")
    assert [type(d) for d in chain.defences] == [MAD, TopK] and chain.defences[0].eps == 0.5
    assert parse_defence(["reverse_sigmoid:beta=0.7,gamma=0.2", TopK(2)]).spec() == \
        "reverse_sigmoid:beta=0.7,gamma=0.2+top_k:k=2"
    assert parse_defence("mad_argmax:eps=0.3").defences[0].argmax
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
