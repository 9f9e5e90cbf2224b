"""Issue 15: every bad input to the library either works or ends in the project's own clear
error (see fuzz_cases.is_clear), parts that do not fit are refused at construction naming
which disagrees with which, and no message advises loading a file unsafely."""
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from torch import nn

import fuzz_cases
from conftest import LinearNet, tiny_world
from knockoff_env import BlackBox, KnockoffEnv, VictimOutputError
from knockoff_env.durability.checkpoint import CheckpointError, save_checkpoint
from knockoff_env.errors import DeviceError, FitError, KnockoffError
from knockoff_env.devices import resolve_device

FUZZ = settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))


@pytest.mark.parametrize("scenario", sorted(fuzz_cases.ENV_SCENARIOS))
def test_bad_inputs_work_or_end_in_a_clear_error(scenario):
    strategy, run = fuzz_cases.ENV_SCENARIOS[scenario]
    known_bad = fuzz_cases.KNOWN_BAD.get(scenario, lambda value: False)

    @FUZZ
    @given(strategy)
    def check(value):
        verdict = fuzz_cases.outcome(run, value)
        assert verdict in ("ok", "clear"), f"{value!r}: {verdict}"
        assert not (verdict == "ok" and known_bad(value)), f"{value!r} was accepted silently"

    check()


# --- the examples of the issue, on a small custom world -------------------------------------
class SmallCNN(nn.Module):
    """A 3-channel 5×5-image classifier: a world unlike the tiny vectors of the fuzz."""

    def __init__(self, classes: int, channels: int = 3):
        super().__init__()
        self.conv, self.fc = nn.Conv2d(channels, 4, 3), nn.Linear(4 * 3 * 3, classes)

    def forward(self, x):
        return self.fc(torch.relu(self.conv(x)).flatten(1))


def cnn_world(**kwargs):
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(40) % 8
    options = dict(victim=SmallCNN(5), query_set=(torch.rand(40, 3, 5, 5, generator=g), labels),
                   knockoff=lambda: SmallCNN(5), eval_set=(torch.rand(10, 3, 5, 5, generator=g), torch.arange(10) % 5),
                   hierarchy={"low": [0, 1, 2, 3], "high": [4, 5, 6, 7]}, budget=16, device="cpu")
    options.update(kwargs)
    return KnockoffEnv(**options)


def test_a_fitting_custom_world_plays_and_the_probe_costs_no_query():
    env = cnn_world()
    assert env.num_classes == 5 and env.victim.queries == 0
    env.reset(seed=0)
    done = False
    while not done:
        _, _, done, _, _ = env.step(env.action_space.sample())
    assert env.victim.queries == env.spent == 16
    assert 0 <= env.evaluate()["agreement"] <= 1


def test_a_shared_black_box_keeps_its_query_count_through_the_probe():
    box = BlackBox(SmallCNN(5), device="cpu")
    box.queries = 123
    cnn_world(victim=box)
    assert box.queries == 123


def test_victim_width_that_differs_from_num_classes_is_refused_at_construction():
    with pytest.raises(VictimOutputError, match=r"victim returned 5 classes, expected num_classes=10 — pass "
                                                r"num_classes=5"):
        cnn_world(num_classes=10)


def test_knockoff_with_the_wrong_output_width_is_refused_at_construction():
    with pytest.raises(FitError, match=r"the knockoff outputs 7 classes but the victim answers 5 — build the "
                                       r"knockoff with 5 outputs"):
        cnn_world(knockoff=lambda: SmallCNN(7))


def test_knockoff_that_cannot_take_the_images_is_refused_at_construction():
    with pytest.raises(FitError, match=r"the knockoff cannot take the query_set images \(a batch of shape "
                                       r"\(2, 3, 5, 5\) \(float32\)\).* — build the knockoff for query_set images "
                                       r"of shape \(3, 5, 5\)"):
        cnn_world(knockoff=lambda: SmallCNN(5, channels=1))


def test_victim_that_cannot_take_the_query_images_is_refused_at_construction():
    with pytest.raises(FitError, match=r"the victim cannot take the query_set images \(a batch of shape "
                                       r"\(2, 3, 5, 5\) \(float32\)\): RuntimeError: .*3 channels.* — give query_set images in the shape"):
        cnn_world(victim=SmallCNN(5, channels=1), knockoff=lambda: SmallCNN(5, channels=1))


def test_eval_set_that_does_not_fit_the_models_is_refused_at_construction():
    with pytest.raises(FitError, match=r"the victim cannot take the eval_set images \(a batch of shape \(2, 3, 7\)"):
        cnn_world(eval_set=(torch.rand(4, 3, 7), torch.zeros(4, dtype=torch.long)))
    with pytest.raises(FitError, match=r"eval_set labels run from 0 to 9 but the victim has 5 classes"):
        cnn_world(eval_set=(torch.rand(10, 3, 5, 5), torch.arange(10)))


def test_hierarchy_label_without_images_is_named():
    with pytest.raises(KnockoffError, match=r"hierarchy labels 8 \(in 'high'\), 9 \(in 'high'\) have no images"):
        cnn_world(hierarchy={"low": [0, 1, 2, 3], "high": [4, 5, 6, 7, 8, 9]})


def test_devices_that_torch_or_this_machine_lacks_are_named():
    with pytest.raises(DeviceError, match="'bogus' is not a device torch knows — use 'auto'"):
        resolve_device("bogus")
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    with pytest.raises(DeviceError, match="no usable CUDA GPU" if count == 0 else f"has {count} CUDA GPU"):
        resolve_device(f"cuda:{count}" if count else "cuda")
    with pytest.raises(DeviceError, match=r"device=\['cpu'\] is not a device torch knows"):
        resolve_device(["cpu"])
    assert resolve_device("cpu") == torch.device("cpu")


@pytest.mark.parametrize("content", ["garbage", "truncated", "numpy object"])
def test_a_damaged_checkpoint_is_refused_without_advising_unsafe_loading(tmp_path, content):
    path = tmp_path / "checkpoint.pt"
    if content == "numpy object":  # a pickle that torch's safe loader refuses, with its advice to load unsafely
        torch.save({"x": np.arange(3)}, path)
    else:
        save_checkpoint(path, {"x": torch.ones(3)}, {"budget": 1})
        data = path.read_bytes()
        path.write_bytes(b"not a checkpoint" * 4 if content == "garbage" else data[:len(data) // 2])
    env = fuzz_cases.make_env()
    with pytest.raises(CheckpointError) as caught:
        env.load(path)
    message = str(caught.value)
    assert "damaged or not a knockoff_env checkpoint" in message and " — use an earlier copy" in message
    assert "weights_only" not in message and "unsafe" not in message.lower()


def test_victim_answers_of_the_wrong_kind_are_named():
    (x, y), victim, hierarchy = tiny_world()
    for answer, message in [(lambda images: None, "answered with a NoneType"),
                            (lambda images: torch.ones(len(images), 3, dtype=torch.bool), "torch.bool"),
                            (lambda images: torch.ones(len(images), 0), "0 classes")]:
        with pytest.raises(VictimOutputError, match=message):
            KnockoffEnv(answer, (x, y), lambda: LinearNet(), hierarchy=hierarchy, device="cpu")
