"""MAD against a per-query oracle written from the prediction-poisoning code's description:
G from torch.func, targets searched one answer at a time, the line search; and the
closed-form and autograd gradients against torch.func."""
import itertools

import numpy as np
import pytest
import torch
from conftest import LinearNet
from torch import nn

from knockoff_env import BlackBox
from knockoff_env.victim.mad import MAD, Scorer, closed_form, jacobian_gram, last_layer


class NormHead(nn.Module):
    """A head the closed form does not cover: BatchNorm after the last Linear."""

    def __init__(self, dim=12, classes=10):
        super().__init__()
        self.fc = nn.Linear(dim, classes)
        self.bn = nn.BatchNorm1d(classes)

    def forward(self, x):
        return self.bn(self.fc(x.flatten(1)))


def surrogate(kind, classes, dim=12):
    torch.manual_seed(0)
    model = LinearNet(dim, classes) if kind == "linear" else NormHead(dim, classes)
    if kind == "norm":  # running statistics away from (0, 1), so BatchNorm changes the vertex chosen
        model.bn.running_mean.uniform_(-1, 1)
        model.bn.running_var.uniform_(0.2, 3)
        model.bn.weight.data.uniform_(0.3, 2)
    return model.eval()


def answers(n, k, seed=0):
    g = torch.Generator().manual_seed(seed)
    concentration = torch.exp(torch.randn(n, 1, generator=g) * 1.5)  # from near one-hot to near uniform
    gamma = torch._standard_gamma(concentration.expand(n, k).contiguous(), generator=g)
    y = (gamma / gamma.sum(1, keepdim=True)).double()
    y[0] = torch.softmax(torch.arange(k, dtype=torch.float64) * 3, 0)  # confident
    return y


def oracle_jacobian(model, x):
    """G (K, D): ∇ of −log F_k(x) for the last weighted layer's weight, by torch.func."""
    layer = last_layer(model)
    name = next(n for n, m in model.named_modules() if m is layer) + ".weight"
    params = {k: v.detach().double() for k, v in model.named_parameters()}
    buffers = {k: v.double() for k, v in model.named_buffers()}

    def nll(w):
        out = torch.func.functional_call(model, ({**params, name: w}, buffers), (x[None].double(),))
        return -torch.log_softmax(out, 1)[0]
    jac = torch.func.jacrev(nll)(params[name])
    return jac.reshape(jac.shape[0], -1)


def objective(g, target, y):
    u, v = g.T @ target, g.T @ y
    return float(((u / u.norm() - v / v.norm()) ** 2).sum())


def oracle_target(g, y, search):
    k = len(y)
    if search == "vertex":
        values = [objective(g, torch.eye(k, dtype=y.dtype)[i], y) for i in range(k)]
        return torch.eye(k, dtype=y.dtype)[int(np.argmax(values))]  # the first of equal values
    top = int(y.argmax())
    if k <= 10:
        best, best_value = None, -1.0
        for bits in itertools.product([0.0, 1.0], repeat=k):
            if bits[top]:
                t = torch.tensor(bits, dtype=y.dtype)
                t[top] += 1e-5
                t = t / t.sum()
                value = objective(g, t, y)
                if value > best_value:
                    best, best_value = t, value
        return best
    smooth = (y + 1e-8) / (y + 1e-8).sum()
    fixed, best, best_value, tried = [top], None, -1.0, 0
    while tried < 1024 and len(fixed) < k:
        values = []
        rest = [c for c in range(k) if c not in fixed]
        for c in rest:
            t = torch.zeros(k, dtype=y.dtype)
            t[fixed + [c]] = 1
            t[top] += 1e-5
            values.append((objective(g, t / t.sum(), smooth), t / t.sum()))
        i = int(np.argmax([v for v, _ in values]))
        if values[i][0] > best_value:
            best_value, best = values[i]
        fixed.append(rest[i])
        tried += len(rest)
    return best


def oracle_mad(model, images, y, eps, search):
    out = []
    for x, yi in zip(images, y):
        target = oracle_target(oracle_jacobian(model, x), yi, search)
        alpha = min(1.0, max(0.0, eps / (float((yi - target).abs().sum()) + 1e-7)))
        out.append((1 - alpha) * yi + alpha * target)
    return torch.stack(out)


CASES = [("linear", 10, "vertex"), ("norm", 10, "vertex"), ("linear", 10, "argmax"), ("norm", 10, "argmax"),
         ("linear", 4, "argmax"), ("linear", 13, "argmax"), ("norm", 13, "argmax"), ("linear", 60, "argmax")]


@pytest.mark.parametrize("kind, k, search", CASES)
@pytest.mark.parametrize("eps", [0.3, 1.0, 2.0])
def test_mad_equals_the_oracle(kind, k, search, eps):
    model = surrogate(kind, k)
    n = 6 if k > 20 else 12
    images = torch.randn(n, 12, generator=torch.Generator().manual_seed(1))
    y = answers(n, k)
    mad = MAD(eps, surrogate=model, target=search)
    mad.bind(None, torch.device("cpu"))
    ours = mad(y.float(), images).double()
    expected = oracle_mad(model, images, y.float().double(), eps, search)
    np.testing.assert_allclose(ours.numpy(), expected.numpy(), atol=2e-6)
    l1 = (ours - y.float().double()).abs().sum(1)
    assert (l1 <= eps + 1e-5).all()
    if search == "argmax":
        assert torch.equal(ours.argmax(1), y.argmax(1))


@pytest.mark.parametrize("kind", ["linear", "norm"])
def test_deviation_gradients_equal_torch_func(kind):
    """The closed form (Linear head) and the per-sample autograd Gram (other heads) give the
    deviation computed from G = ∇_W(−log F) by torch.func."""
    model, k = surrogate(kind, 10), 10
    images, y = torch.randn(5, 12, generator=torch.Generator().manual_seed(2)), answers(5, k, seed=3)
    mad = MAD(1.0, surrogate=model)
    mad.bind(None, torch.device("cpu"))
    score = mad.scorer(images, y)
    assert (score.apply.__name__ == "apply") == (kind == "linear")  # the closed form only for a Linear head
    candidates = torch.eye(k, dtype=torch.float64).expand(5, k, k)
    fast = score(candidates)
    for i in range(5):
        g = oracle_jacobian(model, images[i])
        slow = [objective(g, e, y[i]) for e in torch.eye(k, dtype=torch.float64)]
        np.testing.assert_allclose(fast[i].numpy(), slow, rtol=1e-6)  # p from float32 logits
    if kind == "norm":
        gram = jacobian_gram(model, last_layer(model), images)
        for i in range(5):
            g = oracle_jacobian(model, images[i])
            np.testing.assert_allclose(gram[i].numpy(), (g @ g.T).numpy(), rtol=1e-5, atol=1e-7)  # float32 forward


def test_the_head_changes_the_target():
    """With BatchNorm after the last Linear, the closed form (fed the same p) picks other vertices."""
    model = surrogate("norm", 10)
    images, y = torch.randn(40, 12, generator=torch.Generator().manual_seed(4)), answers(40, 10, seed=5)
    mad = MAD(1.0, surrogate=model)
    mad.bind(None, torch.device("cpu"))
    vertices = torch.eye(10, dtype=torch.float64).expand(40, 10, 10)
    right = mad.pick(mad.scorer(images, y), vertices)
    p = torch.softmax(model(images).double(), 1).detach()
    wrong = mad.pick(Scorer(closed_form(p), y), vertices)
    assert (right != wrong).any(1).double().mean() > 0.2


def test_argmax_vertex_keeps_top1_and_deviates_more_on_small_budgets():
    model = surrogate("linear", 10)
    images, y = torch.randn(64, 12, generator=torch.Generator().manual_seed(6)), answers(64, 10, seed=7)
    for eps in (0.1, 0.5, 1.0, 2.0):
        outs = {}
        for search in ("argmax", "argmax_vertex"):
            mad = MAD(eps, surrogate=model, target=search)
            mad.bind(None, torch.device("cpu"))
            outs[search] = mad(y.float(), images).double()
            assert torch.equal(outs[search].argmax(1), y.argmax(1))
            assert ((outs[search] - y.float().double()).abs().sum(1) <= eps + 1e-5).all()
        score = mad.scorer(images, y.float().double())
        deviation = {s: float(score(o[:, None])[:, 0].mean()) for s, o in outs.items()}
        if eps <= 0.5:
            assert deviation["argmax_vertex"] > deviation["argmax"]


def test_default_surrogate_is_a_fresh_copy_and_specs():
    victim = LinearNet(dim=6, classes=3)
    box = BlackBox(victim, defence="mad_argmax:eps=0.5", device="cpu")
    mad = box.defence.defences[0]
    assert type(mad.surrogate) is LinearNet and mad.surrogate is not victim and mad.target == "argmax"
    assert not torch.equal(mad.surrogate.fc.weight, victim.fc.weight)
    assert box.defence.spec() == "mad_argmax:eps=0.5,seed=0"
    with pytest.raises(ValueError, match="needs a surrogate"):
        BlackBox(lambda x: torch.full((len(x), 3), 1 / 3), defence="mad")
    with pytest.raises(ValueError, match="target='best'"):
        MAD(1.0, target="best")
    x = torch.randn(4, 6)
    assert torch.equal(BlackBox(victim, defence="mad:eps=0", device="cpu")(x), BlackBox(victim, device="cpu")(x))
