"""Adaptive misinformation against the reference's formulas; its misinformation model, how it
gets its training data in every kind of env, and why the old default could be inverted."""
import gymnasium as gym
import numpy as np
import pytest
import torch
from conftest import LinearNet
from glyph_world import glyph_data, make_glyph_env

import knockoff_env  # noqa: F401  (registers the ids)
from knockoff_env import BlackBox, KnockoffEnv
from knockoff_env.victim.misinformation import AdaptiveMisinformation, misinformation_loss, outliers
from knockoff_env.worlds.digits import digits_query_set


def reference_answer(y, wrong, tau, nu):
    """The reference's blend, per answer in float64: h = 1 / (1 + exp(−ν(τ − y_max)))."""
    out = []
    for yi, wi in zip(y.double().numpy(), wrong.double().numpy()):
        z = -nu * (tau - yi.max())
        h = 0.0 if z > 700 else 1 / (1 + np.exp(z))
        out.append((1 - h) * yi + h * wi)
    return np.array(out)


def test_blend_equals_the_reference_with_a_given_model():
    torch.manual_seed(0)
    model = LinearNet(dim=6, classes=3)
    g = torch.Generator().manual_seed(1)
    images = torch.randn(200, 6, generator=g)
    y = torch.softmax(torch.randn(200, 3, generator=g) * 3, 1)
    y[0] = torch.tensor([0.8995, 0.05, 0.0505])  # just below τ: the switch half on (α = σ(5))
    defence = AdaptiveMisinformation(tau=0.9, nu=10000, misinformation=model)
    defence.bind(None, torch.device("cpu"))
    ours = defence(y, images)
    wrong = torch.softmax(model(images), 1).detach()
    np.testing.assert_allclose(ours.double().numpy(), reference_answer(y, wrong, 0.9, 10000), atol=1e-6)
    switched = y.max(1).values < 0.899
    assert switched.any() and (~switched).any()
    assert torch.allclose(ours[switched], wrong[switched], atol=1e-6)


def test_the_loss_is_the_references_criterion():
    """The reference feeds log(1 − f̂ + 1e-7) to cross-entropy: the same loss up to a
    constant, so the same gradient."""
    g = torch.Generator().manual_seed(2)
    logits = torch.randn(16, 10, generator=g, requires_grad=True)
    labels = torch.randint(0, 10, (16,), generator=g)
    ours, = torch.autograd.grad(misinformation_loss(logits, labels), logits)
    reference = torch.nn.functional.cross_entropy(torch.log(1 - torch.softmax(logits, 1) + 1e-7), labels)
    theirs, = torch.autograd.grad(reference, logits)
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-7)


@pytest.fixture(scope="module")
def digits_env():
    return gym.make("Knockoff-Digits-v0", device="cpu", defence="adaptive_misinformation").unwrapped


def test_the_misinformation_model_is_wrong_on_the_owners_images_and_on_outliers(digits_env):
    defence = digits_env.victim.defence.defences[0]
    assert defence.spec() == "adaptive_misinformation:tau=0.9,nu=10000.0,epochs=10,seed=0"
    x, _ = digits_env.eval_set
    odd = outliers(x, torch.Generator().manual_seed(9))
    for images in (x, odd):
        with torch.no_grad():
            victim = digits_env.victim.victim(images).argmax(1)
            wrong = torch.softmax(defence.model(images), 1)
        assert (wrong.argmax(1) != victim).double().mean() > 0.95
        assert wrong.gather(1, victim[:, None]).mean() < 0.05
    report = digits_env.evaluate()
    assert report["victim_accuracy_defended"] >= report["victim_accuracy"] - 0.02


def test_the_old_default_is_invertible_the_trained_model_is_not(digits_env):
    """On the attack's own out-of-distribution queries (the digits world's distractors),
    normalise(1/ỹ) gives the victim's answer back for softmax(−log y); against the trained
    model the same inversion finds the victim's top-1 little more often than chance (1 in 10)."""
    images, labels, _, _ = digits_query_set()
    x = images[labels >= 10][::4]
    true, answered = digits_env.victim.true_and_defended(x)
    switched = true.max(1).values < 0.89
    assert switched.double().mean() > 0.3
    inverted = 1 / answered[switched]
    assert (inverted / inverted.sum(1, keepdim=True)).argmax(1).eq(true[switched].argmax(1)).double().mean() < 0.2
    assert answered[switched].argmax(1).ne(true[switched].argmax(1)).double().mean() > 0.9
    box = BlackBox(digits_env.victim.victim, defence="adaptive_misinformation:misinformation='reversed'", device="cpu")
    reversed_answers = box(x)[switched]
    inverted = 1 / reversed_answers
    torch.testing.assert_close(inverted / inverted.sum(1, keepdim=True), true[switched], rtol=1e-3, atol=1e-5)


def test_trained_once_per_victim_and_data(digits_env):
    again = gym.make("Knockoff-Digits-v0", device="cpu", defence="adaptive_misinformation").unwrapped
    first, second = (e.victim.defence.defences[0].model for e in (digits_env, again))
    assert first is not second
    assert all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), second.state_dict().values()))


def test_a_custom_env_fits_it_on_its_eval_set_and_says_what_is_missing():
    env = make_glyph_env(defence="adaptive_misinformation")
    x, _ = glyph_data()["test"]
    model = env.victim.defence.defences[0].model
    with torch.no_grad():
        assert (model(x).argmax(1) != env.victim.victim(x).argmax(1)).double().mean() > 0.9
    env.reset(seed=0)
    env.step(env.action_space.sample())
    with pytest.raises(ValueError, match="eval_set"):
        make_glyph_env(defence="adaptive_misinformation", eval_set=None)
    box = BlackBox(LinearNet(), defence="adaptive_misinformation", device="cpu")
    with pytest.raises(RuntimeError, match=r"defence.fit\(\(images, labels\)\)"):
        box(torch.randn(2, 6))
    box.defence.fit((torch.randn(32, 6), torch.randint(0, 3, (32,))))
    assert box(torch.randn(2, 6)).shape == (2, 3)
    with pytest.raises(ValueError, match="not an nn.Module"):
        KnockoffEnv(victim=lambda x: torch.full((len(x), 3), 1 / 3), query_set=(torch.randn(8, 6), torch.zeros(8)),
                    eval_set=(torch.randn(8, 6), torch.zeros(8)), defence="adaptive_misinformation", budget=4,
                    knockoff=LinearNet, device="cpu")
