"""PRADA against a per-query oracle written from the authors' description, on benign streams
of two victims' own distributions, and on Jacobian-augmentation streams."""
import numpy as np
import pytest
import torch
from glyph_world import glyph_data, glyph_victim
from prada_oracle import OraclePRADA
from test_detectors import feed, one_hot

from knockoff_env import BlackBox
from knockoff_env.training.jacobian import JacobianAugmentation
from knockoff_env.victim.detectors import PRADA
from knockoff_env.victim.detectors.prada import DEFAULT_DELTA
from knockoff_env.worlds.digits import DigitsNet, digits_split, load_digits_victim


class Tracing(PRADA):
    """Records W at every test that runs."""

    def statistic(self):
        w = super().statistic()
        if w is not None:
            self.trace.append((self.seen, w))
        return w


def traced(images, answers, batch=4, **kwargs):
    detector = Tracing(**kwargs)
    detector.trace = []
    feed(detector, images, answers, batch)
    return detector


def natural_stream(n=400, dim=32, seed=0):
    """Independent Gaussian points: nearest-neighbour distances are close to normal."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, dim, generator=g), one_hot(torch.randint(0, 3, (n,), generator=g))


def synthetic_stream(n=400, dim=32, seeds=10, step=0.1, seed=0):
    """A few natural seeds, then each round every query spawns x + λ·sign(random): the shape
    of a Jacobian-augmentation stream without a model."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(seeds, dim, generator=g)
    while len(x) < n:
        signs = torch.randint(0, 2, x.shape, generator=g).float() * 2 - 1
        x = torch.cat([x, x + step * signs])
    return x[:n], one_hot(torch.randint(0, 3, (n,), generator=g))


def oracle_of(images, answers, delta, **kwargs):
    oracle = OraclePRADA(delta, **kwargs)
    for x, c in zip(images.flatten(1).numpy(), answers.argmax(1).tolist()):
        oracle.query(x, c)
    return oracle


STREAMS = {"gaussian": lambda: natural_stream(600), "perturbed seeds": lambda: synthetic_stream(600),
           "digits": lambda: (digits_split()[1][0][:400], one_hot(digits_split()[1][1][:400], 10))}


@pytest.mark.parametrize("stream", list(STREAMS))
@pytest.mark.parametrize("batch", [1, 7])
def test_growing_sets_thresholds_and_tests_equal_the_oracle(stream, batch):
    x, y = STREAMS[stream]()
    oracle = oracle_of(x, y, delta=0.0)  # δ = 0: never alarms, so every test runs to the end
    detector = traced(x, y, batch, delta=1e-9)
    assert detector.alarm_at is None and detector.seen == len(x)
    for c, members in oracle.sets.items():
        ours = detector.members[c][:detector.counts[c]].double().numpy()
        np.testing.assert_allclose(ours, np.stack(members), rtol=0, atol=0)  # same members, same order
        assert detector.thresholds[c] == pytest.approx(oracle.thresholds[c], rel=1e-6)  # float32 distances
    assert set(detector.counts) == set(oracle.sets)
    assert sum(detector.counts.values()) == len(oracle.joined)
    assert [q for q, _ in detector.trace] == [q for q, _ in oracle.statistics]
    np.testing.assert_allclose([w for _, w in detector.trace], [w for _, w in oracle.statistics], rtol=1e-6)


def test_the_starting_zero_grows_larger_sets_than_without_it():
    """What the reference's starting 0 changes: thresholds are lower, so more queries join."""
    x, y = STREAMS["digits"]()
    oracle = oracle_of(x, y, delta=0.0)
    assert len(oracle.joined) > 0.7 * len(x)  # most natural digits join their class's set
    assert all(oracle.set_distances[c][0] == 0.0 for c in oracle.sets)


@pytest.mark.parametrize("delta", [0.9, 0.97, 0.99])
def test_alarm_query_equals_the_oracle(delta):
    x, y = synthetic_stream(500, seed=2)
    x[:150] = natural_stream(150, seed=3)[0]
    oracle = oracle_of(x, y, delta)
    assert feed(PRADA(delta=delta), x, y, batch=5) == oracle.alarm_at
    assert oracle.alarm_at is not None and (oracle.alarm_at - 1) % 10 == 0  # tests run at queries 1, 11, 21, …


def test_cadence_and_pooling_are_configurable():
    x, y = synthetic_stream(400, seed=4)
    every_query = traced(x, y, 4, delta=1e-9, every=1)
    every_ten = traced(x, y, 4, delta=1e-9)
    assert len(every_query.trace) > 9 * len(every_ten.trace)
    assert dict(every_query.trace).items() >= dict(every_ten.trace).items()  # the same W where both test
    first = every_ten.trace[0][0]
    assert first > 100 and first - 10 < every_query.trace[0][0] <= first
    oracle = oracle_of(x, y, 0.0, every=1, min_per_class=50, min_distances=20)
    ours = traced(x, y, 3, delta=1e-9, every=1, min_per_class=50, min_distances=20)
    assert [q for q, _ in ours.trace] == [q for q, _ in oracle.statistics]


def test_state_round_trips_mid_stream_and_batches_do_not_matter():
    x, y = synthetic_stream(n=300, seed=3)
    x[:60] = natural_stream(n=60, seed=4)[0] * 0.2
    one, many = PRADA(), PRADA()
    assert feed(one, x, y, batch=1) == feed(many, x, y, batch=7)
    assert np.array_equal(one.distances, many.distances) and one.thresholds == many.thresholds
    half = PRADA(delta=1e-9)
    feed(half, x[:90], y[:90], batch=5)
    restored = PRADA(delta=1e-9)
    restored.load_state_dict({k: torch.as_tensor(v) if isinstance(v, np.ndarray) else v
                              for k, v in half.state_dict().items()})
    halves = [traced(x[:0], y[:0], delta=1e-9) for _ in range(2)]
    for d, source in zip(halves, (half, restored)):
        d.load_state_dict(source.state_dict())
        feed(d, x[90:], y[90:], batch=5)
    assert np.array_equal(halves[0].distances, halves[1].distances)
    assert halves[0].thresholds == halves[1].thresholds and halves[0].trace == halves[1].trace
    with pytest.raises(ValueError, match="older version"):
        PRADA().load_state_dict({"alarm_at": -1, "seen": 3, "members": torch.zeros(0, 2)})


def test_one_image_over_and_over_is_an_alarm():
    """The documented deviation: all pooled distances equal counts as W = 0."""
    x = torch.zeros(200, 8)
    x[0] = 1.0
    assert feed(PRADA(), x, one_hot([0] * 200)) == 111


# --- benign clients of the victims' own distributions: no alarm at the defaults --------
def benign_streams():
    """The victims' own images as a benign client sends them: natural order, sorted by
    class, and shuffled (3 seeds), for the digits victim (its test and training digits) and
    the glyph victim (its test and training glyphs)."""
    victim, _ = load_digits_victim()
    glyphs, _ = glyph_victim()
    (train, _), (test, _) = digits_split()
    sources = {"digits test": (test, victim), "digits train": (train, victim),
               "glyph test": (glyph_data()["test"][0], glyphs), "glyph train": (glyph_data()["train"][0], glyphs)}
    for name, (x, model) in sources.items():
        with torch.no_grad():
            answers = torch.softmax(model(x), 1)
        yield f"{name} natural", x, answers
        order = answers.argmax(1).argsort(stable=True)
        yield f"{name} by class", x[order], answers[order]
        for seed in range(3):
            order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
            yield f"{name} shuffled {seed}", x[order], answers[order]


def test_no_alarm_on_benign_streams_at_the_defaults():
    streams = list(benign_streams())
    assert len(streams) == 20
    for name, x, answers in streams:
        detector = traced(x, answers)
        assert detector.alarm_at is None, name
        assert len(detector.trace) >= 40 and min(w for _, w in detector.trace) >= DEFAULT_DELTA, name


def test_alarm_on_jacobian_augmentation_streams_at_the_defaults():
    victim, _ = load_digits_victim()
    seeds = digits_split()[1][0][:20]
    box = BlackBox(victim, device="cpu")
    images, answers = JacobianAugmentation(DigitsNet, clip=None, epochs=3, seed=0).stream(box, seeds, rounds=6)
    assert len(images) == box.queries == 20 * 2 ** 5
    alarm = feed(PRADA(), images, answers)
    assert alarm is not None and alarm <= 200
