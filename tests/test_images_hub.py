"""Images off the critical path and the data sources users have: batched decoding, packed query
sets (``knockoff pack``), Hugging Face datasets, timm models, compiled models."""
import json
import warnings

import gymnasium as gym
import numpy as np
import pytest
import torch
from PIL import Image

from conftest import LinearNet
from knockoff_env import KnockoffEnv
from agents.cli import main
from knockoff_env.data.common import class_folders
from knockoff_env.data.hf import HFImages
from knockoff_env.data.transforms import query_transform
from knockoff_env.data.decode import DecodedImageFiles, Preprocess
from knockoff_env.data.packed import PackedImages, pack
from miniature import data_root  # noqa: F401

SIDE, CLASSES = 12, 4  # four labels (a–d): the eval set's labels are the victim's classes


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """Four classes of JPEGs (and one PNG) of varied sizes, in class sub-folders."""
    root = tmp_path_factory.mktemp("folder")
    rng = np.random.default_rng(3)
    for c in range(4):
        (root / f"c{c}").mkdir()
        for i in range(6):
            h, w = rng.integers(14, 50, 2)
            image = Image.fromarray((rng.integers(0, 256, (h, w, 3)) // (c + 1)).astype(np.uint8))
            image.save(root / f"c{c}" / (f"{i}.png" if (c, i) == (1, 2) else f"{i}.jpg"))
    return root


@pytest.fixture(scope="module")
def packed(folder, tmp_path_factory):
    out = tmp_path_factory.mktemp("packs") / "p"
    assert main(["pack", str(folder), str(out), "--image-size", str(SIDE), "--shard-size", "5", "--quiet"]) == 0
    return out


def env_on(query_set, budget=20, **options):
    torch.manual_seed(0)
    return KnockoffEnv(LinearNet(3 * SIDE * SIDE, CLASSES), query_set, lambda: LinearNet(3 * SIDE * SIDE, CLASSES),
                       budget=budget, device="cpu", num_classes=CLASSES, **options)


def play(env, seed=5, steps=5):
    """``steps`` steps on labels drawn by a seeded generator (hierarchy: one node)."""
    env.reset(seed=seed)
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        env.step(np.array([0, rng.integers(env.query_set.num_labels)]))
    indices, outputs = env.transfer_set.view()
    return indices.copy(), outputs.copy()


def test_preprocess_is_the_papers_transform_bit_for_bit(folder):
    image = Image.open(folder / "c0" / "0.jpg")
    assert torch.equal(Preprocess.paper(SIDE)(image), query_transform(SIDE)(image))
    assert Preprocess.from_json(json.loads(json.dumps(Preprocess.paper(SIDE).to_json()))) == Preprocess.paper(SIDE)


def test_batched_torchvision_decoding_matches_pillow_closely(folder):
    files = class_folders(folder, query_transform(SIDE))
    decoded = DecodedImageFiles(files, Preprocess.paper(SIDE), "cpu")
    index = [0, 8, 7, 23]  # 8 is the PNG: decoded by another path within the same batch
    batch = decoded.load_batch(index)
    assert batch.shape == (4, 3, SIDE, SIDE) and batch.dtype == torch.float32
    assert torch.equal(batch[2], decoded[7][0])
    pillow = torch.stack([files[i][0] for i in index])
    assert (batch - pillow).abs().mean() < 0.02  # another resampler: close, not equal
    assert np.array_equal(decoded.targets, files.targets)


def test_a_broken_file_is_read_the_files_own_way(folder, tmp_path):
    root = tmp_path / "broken"
    (root / "a").mkdir(parents=True)
    for name in ("0.jpg", "1.jpg"):
        Image.open(folder / "c0" / name).save(root / "a" / name)
    (root / "a" / "1.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    decoded = DecodedImageFiles(class_folders(root, query_transform(SIDE)), Preprocess.paper(SIDE), "cpu")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        batch = decoded.load_batch([0, 1])
    assert any("cannot decode" in str(w.message) for w in caught)
    # the broken file is replaced by its label's next readable image, read with Pillow
    assert torch.equal(batch[1], Preprocess.paper(SIDE)(Image.open(root / "a" / "0.jpg")))


def test_a_packed_query_set_gives_the_same_transfer_set_as_its_folder(folder, packed):
    files = class_folders(folder, query_transform(SIDE))
    pack_set = PackedImages(packed)
    assert len(pack_set.shards) == 5 and np.array_equal(pack_set.targets, files.targets)
    index = [23, 0, 5, 6, 5, 12]  # across shards, unsorted, repeated
    assert torch.equal(pack_set.load_batch(index), torch.stack([files[i][0] for i in index]))
    from_folder, from_pack = play(env_on(files)), play(env_on(pack_set))
    assert np.array_equal(from_folder[0], from_pack[0]) and len(from_folder[0]) >= 12
    assert np.array_equal(from_folder[1], from_pack[1])


def test_pack_refuses_to_overwrite_and_a_damaged_pack_is_a_clear_error(folder, packed, tmp_path, capsys):
    assert main(["pack", str(folder), str(packed), "--image-size", str(SIDE), "--quiet"]) == 2
    assert "already holds a packed query set" in capsys.readouterr().err
    with pytest.raises(FileNotFoundError, match="not a packed query set"):
        PackedImages(tmp_path)
    damaged = tmp_path / "damaged"
    damaged.mkdir()
    for f in packed.iterdir():
        (damaged / f.name).write_bytes(f.read_bytes())
    np.save(damaged / "labels.npy", np.zeros(3, np.int64))
    with pytest.raises(ValueError, match="damaged"):
        PackedImages(damaged)


def test_a_paper_world_reads_a_packed_query_set(data_root, tmp_path):  # noqa: F811
    options = dict(query_set="openimages", data_root=data_root, hierarchy=None, arch="resnet18",
                   knockoff_init="scratch", image_size=32, device="cpu", budget=12)
    assert main(["pack", "openimages", str(tmp_path / "oi"), "--data-root", str(data_root), "--image-size", "32",
                 "--quiet"]) == 0
    runs = []
    for extra in ({}, {"packed": str(tmp_path / "oi")}, {"decode": "cpu"}):
        env = gym.make("Knockoff-CUBS200-v0", **options, **extra).unwrapped
        env.reset(seed=0)
        for action in ([0, 1], [0, 3], [0, 1]):
            env.step(np.array(action))
        runs.append(env.transfer_set.view())
    assert isinstance(env.query_set.images, DecodedImageFiles)
    assert np.array_equal(runs[0][0], runs[1][0]) and np.array_equal(runs[0][1], runs[1][1])
    assert np.array_equal(runs[0][0], runs[2][0])  # same draws; torchvision's pixels differ slightly
    with pytest.raises(ValueError, match="pack it again with --image-size 64"):
        gym.make("Knockoff-CUBS200-v0", **{**options, "image_size": 64}, packed=str(tmp_path / "oi"))
    with pytest.raises(ValueError, match="decode="):
        gym.make("Knockoff-CUBS200-v0", **options, decode="nvjpeg")


@pytest.fixture(scope="module")
def hf_dataset(folder, tmp_path_factory):
    """The folder's images as a Hugging Face dataset on disk (image + ClassLabel columns)."""
    import datasets

    paths = sorted(folder.glob("c*/*.*"))
    features = datasets.Features({"img": datasets.Image(), "label": datasets.ClassLabel(names=["a", "b", "c", "d"])})
    data = datasets.Dataset.from_dict({"img": [str(p) for p in paths], "label": [int(p.parent.name[1]) for p in paths]},
                                      features=features)
    out = tmp_path_factory.mktemp("hf") / "ds"
    datasets.DatasetDict({"train": data, "test": data.select(range(0, len(data), 3))}).save_to_disk(str(out))
    return out


def test_a_hugging_face_dataset_is_a_query_set_and_an_eval_set(hf_dataset, tmp_path):
    query = HFImages(hf_dataset, split="train", transform=Preprocess.paper(SIDE))
    test = HFImages(hf_dataset, split="test", transform=Preprocess.paper(SIDE))
    assert query.classes == ["a", "b", "c", "d"] and np.bincount(query.targets).tolist() == [6, 6, 6, 6]
    env = env_on(query, eval_set=test)
    play(env)
    assert 0 <= env.evaluate()["agreement"] <= 1
    with pytest.raises(ValueError, match="choose one with split"):
        HFImages(hf_dataset)
    with pytest.raises(ValueError, match="no label column 'y'"):
        HFImages(hf_dataset, split="train", label_column="y")
    # packed from the dataset folder, it serves the same pixels
    assert main(["pack", str(hf_dataset), str(tmp_path / "p"), "--image-size", str(SIDE), "--quiet"]) == 0
    assert torch.equal(PackedImages(tmp_path / "p")[7][0], query[7][0])


def test_timm_victim_and_knockoff_with_local_weights_and_their_preprocessing(folder, hf_dataset, tmp_path):
    from timm.data import create_transform, resolve_data_config

    from knockoff_env.models.timm import timm_model, timm_preprocess
    from knockoff_env.worlds.hub import make_hub_env

    victim = timm_model("test_resnet", num_classes=4)
    torch.save(victim.state_dict(), tmp_path / "victim.pt")
    loaded = timm_model("test_resnet", weights=tmp_path / "victim.pt", strict=True)  # 4 classes, from the file
    assert all(torch.equal(a, b) for a, b in zip(victim.state_dict().values(), loaded.state_dict().values()))
    image = Image.open(folder / "c0" / "0.jpg")
    for name in ("test_resnet", "test_vit"):  # bilinear / bicubic, mean 0.5, crop 0.95 at 160 px
        model = timm_model(name)
        assert torch.equal(timm_preprocess(model)(image), create_transform(**resolve_data_config({}, model=model))(image))
    env = make_hub_env(victim="test_resnet", victim_weights=tmp_path / "victim.pt", query_set=hf_dataset,
                       eval_set=hf_dataset, budget=8, device="cpu")
    assert env.num_classes == 4 and env.query_set.fetch(np.arange(2)).shape == (2, 3, 160, 160)
    env.reset(seed=0)
    env.step(np.array([0, 1]))
    assert set(env.evaluate()) >= {"knockoff_accuracy", "victim_accuracy"}
    with pytest.raises(ValueError, match="timm has no model"):
        timm_model("no_such_net")
    with pytest.raises(ValueError, match="do not fit this model"):
        timm_model("test_vit", weights=tmp_path / "victim.pt")
    with pytest.raises(FileNotFoundError, match="weights file"):
        timm_model("test_resnet", weights=tmp_path / "missing.pt")


def test_compiled_models_answer_as_the_eager_ones(make_env):
    from knockoff_env.models.compile import compile_option

    eager, compiled = make_env(), make_env(compile_models=True)
    assert compile_option(True, torch.device("cpu")) == "default"
    assert compile_option(True, torch.device("cuda")) == "reduce-overhead"
    runs = []
    for env in (eager, compiled):
        env.reset(seed=1)
        for action in ([0, 0], [1, 0], [0, 1]):  # 4 images each: one shape, one compilation per model
            env.step(np.array(action))
        runs.append(env.transfer_set.view())
    assert np.array_equal(runs[0][0], runs[1][0])
    assert np.allclose(runs[0][1], runs[1][1], atol=1e-5)
    assert set(compiled.knockoff.model.state_dict()) == set(eager.knockoff.model.state_dict())  # keys unchanged
    with pytest.raises(ValueError, match="compile_models"):
        make_env(compile_models="fastest")
