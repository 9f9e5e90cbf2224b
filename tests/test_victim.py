"""BlackBox: output modes of the truncation study, batching, counting, devices."""
import pytest
import torch

from knockoff_env import BlackBox
from knockoff_env.devices import resolve_device

PROBS = torch.tensor([[0.52, 0.33, 0.11, 0.04], [0.13, 0.12, 0.47, 0.28]])


def probs_victim(x):
    return PROBS[x[:, 0].long()]


def ask(**kwargs):
    return BlackBox(probs_victim, device="cpu", **kwargs)(torch.tensor([[0.0], [1.0]]))


def test_full_probabilities_pass_through():
    assert torch.allclose(ask(), PROBS)


def test_top_k_keeps_k_largest_renormalised():
    out = ask(output="top_k", top_k=2)
    assert torch.allclose(out[0], torch.tensor([0.52, 0.33, 0, 0]) / 0.85)
    assert torch.allclose(out[1], torch.tensor([0, 0, 0.47, 0.28]) / 0.75)


def test_rounded_to_r_decimals_then_renormalised():
    out = ask(output="rounded", decimals=1)
    assert torch.allclose(out[0], torch.tensor([0.5, 0.3, 0.1, 0.0]) / 0.9)
    assert torch.allclose(out[1], torch.tensor([0.1, 0.1, 0.5, 0.3]))


def test_rounding_everything_to_zero_falls_back_to_the_label():
    victim = BlackBox(lambda x: torch.full((len(x), 4), 0.25), output="rounded", decimals=0, device="cpu")
    out = victim(torch.zeros(1, 1))
    assert out.sum().item() == pytest.approx(1.0) and out.max().item() == 1.0


def test_label_only_is_one_hot_of_top_class():
    assert ask(output="label").tolist() == [[1, 0, 0, 0], [0, 0, 1, 0]]


def test_module_logits_are_softmaxed_batched_and_counted():
    model = torch.nn.Linear(3, 5)
    box = BlackBox(model, batch_size=4, device="cpu")
    x = torch.randn(10, 3)
    out = box(x)
    assert out.shape == (10, 5) and torch.allclose(out, torch.softmax(model(x), 1), atol=1e-6)
    assert box.queries == 10 and box.num_classes == 5
    assert not any(p.requires_grad for p in model.parameters())


@pytest.mark.parametrize("kwargs, message", [
    (dict(output="top_k", top_k=0), "top_k"), (dict(output="rounded", decimals=-1), "decimals"),
    (dict(batch_size=0), "batch_size"), (dict(returns="scores"), "returns"), (dict(output="soft"), "output mode"),
])
def test_bad_options(kwargs, message):
    with pytest.raises(ValueError, match=message):
        BlackBox(probs_victim, **kwargs)


def test_not_callable_and_empty_query():
    with pytest.raises(TypeError, match="callable"):
        BlackBox(42)
    with pytest.raises(ValueError, match="at least one image"):
        BlackBox(probs_victim, device="cpu")(torch.zeros(0, 1))


def test_auto_device_is_cuda_only_when_present():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    assert resolve_device("cpu").type == "cpu"
