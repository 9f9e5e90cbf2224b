"""Jacobian-based data augmentation (Papernot et al. 2017) against a per-image oracle."""
import pytest
import torch
from conftest import LinearNet
from torch import nn

from knockoff_env import BlackBox
from knockoff_env.training.jacobian import JacobianAugmentation, jacobian_augment, step_size


class SmallNet(nn.Module):
    """Non-linear, with BatchNorm: an image's gradient must not depend on its batch."""

    def __init__(self, classes=3):
        super().__init__()
        self.layers = nn.Sequential(nn.Linear(6, 16), nn.BatchNorm1d(16), nn.Tanh(), nn.Linear(16, classes))

    def forward(self, x):
        return self.layers(x.flatten(1))


def test_step_size_flips_every_tau_rounds():
    assert [step_size(r, 0.1, 3) for r in range(7)] == [0.1, 0.1, 0.1, -0.1, -0.1, -0.1, 0.1]
    assert {step_size(r, 0.2) for r in range(5)} == {0.2}


def test_augmentation_equals_the_per_image_formula():
    """x + λ·sign(∂F_y/∂x) for each image alone, F the substitute's logit of label y."""
    torch.manual_seed(0)
    model = SmallNet()
    model.train()  # jacobian_augment must switch to eval mode and back
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(10, 6, generator=g), torch.randint(0, 3, (10,), generator=g)
    ours = jacobian_augment(model, x, y, step=0.05, batch_size=4)
    assert model.training
    model.eval()
    for i in range(10):
        grad = torch.func.grad(lambda xi: model(xi[None])[0, y[i]])(x[i])
        torch.testing.assert_close(ours[i], x[i] + 0.05 * grad.sign())
    clipped = jacobian_augment(model, x, y, step=5.0, clip=(0.0, 1.0))
    assert clipped.min() >= 0 and clipped.max() <= 1
    with pytest.raises(ValueError, match="10 images but 3 labels"):
        jacobian_augment(model, x, y[:3], 0.1)


def test_the_loop_doubles_each_round_queries_every_new_point_once_and_keeps_the_budget():
    torch.manual_seed(2)
    victim = LinearNet()
    seeds = torch.randn(5, 6, generator=torch.Generator().manual_seed(3))
    box = BlackBox(victim, device="cpu")
    rounds = list(JacobianAugmentation(LinearNet, epochs=2, seed=0, clip=None).rounds(box, seeds, rounds=4))
    assert [len(new) for new, _ in rounds] == [5, 5, 10, 20] and box.queries == 40
    assert torch.equal(rounds[0][0], seeds)
    points = torch.cat([new for new, _ in rounds[:2]])
    steps = (rounds[2][0] - points).abs()
    assert torch.allclose(steps[steps > 0], torch.tensor(0.1))  # every coordinate moved by λ (or not at all)
    for new, answers in rounds:
        torch.testing.assert_close(answers, torch.softmax(victim(new), 1))
    box = BlackBox(victim, device="cpu")
    images, answers = JacobianAugmentation(LinearNet, epochs=1, seed=0).stream(box, seeds, rounds=6, budget=33)
    assert len(images) == len(answers) == box.queries == 33
    same = JacobianAugmentation(LinearNet, epochs=1, seed=0).stream(BlackBox(victim, device="cpu"), seeds, 6, 33)
    assert torch.equal(images, same[0])  # seeded: the same stream again
    with pytest.raises(ValueError, match="tau"):
        JacobianAugmentation(LinearNet, tau=0)
