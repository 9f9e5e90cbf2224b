"""Dataset loaders on miniature copies of the published layouts: split rules, labels,
D² and its semi-open variants, unreadable images, and missing-data errors."""
import shutil
import warnings

import numpy as np
import pytest
import torch

from knockoff_env.data import caltech256, cubs200, d2, diabetic5, ilsvrc, indoor67, openimages, small_scale
from knockoff_env.data.common import DatasetNotFoundError
from knockoff_env.data.victims import victim_data
from knockoff_env.data.transforms import query_transform, resize_for, victim_training_transform

from miniature import CALTECH, CUBS, INDOOR, OPENIMAGES, WNIDS, cifar_without_checksums, data_root  # noqa: F401

SIZE = 16


def paths(data):
    return {p for p, _ in data.samples}


def test_caltech256_holds_out_25_per_class_and_drops_clutter(data_root):
    train = caltech256.load("train", data_root, image_size=SIZE)
    test = caltech256.load("test", data_root, image_size=SIZE)
    assert train.classes == CALTECH and len(train.classes) == 3
    assert np.bincount(test.targets).tolist() == [25, 25, 25]
    assert np.bincount(train.targets).tolist() == [2, 2, 2]
    assert not paths(train) & paths(test)
    every = paths(train) | paths(test)
    assert len(every) == 81 and not any("clutter" in p or "RENAME" in p for p in every)
    assert all(f"/{y + 1:03d}." in p for p, y in test.samples)  # folder NNN is label NNN - 1
    again = caltech256.load("test", data_root, image_size=SIZE)
    assert again.samples == test.samples  # the split is fixed


def test_cubs200_uses_the_official_split(data_root):
    train = cubs200.load("train", data_root, image_size=SIZE)
    test = cubs200.load("test", data_root, image_size=SIZE)
    assert train.classes == CUBS
    assert len(train) == len(test) == 8
    index = {p.split("/")[-1]: int(p.split("_")[-1].split(".")[0]) for p, _ in train.samples + test.samples}
    assert all(index[p.split("/")[-1]] % 2 == 0 for p, _ in train.samples)  # split file marks even ones train
    assert all(index[p.split("/")[-1]] % 2 == 1 for p, _ in test.samples)
    assert all(f"/{y + 1:03d}." in p for p, y in train.samples)


def test_indoor67_uses_the_official_split_files(data_root):
    train = indoor67.load("train", data_root, image_size=SIZE)
    test = indoor67.load("test", data_root, image_size=SIZE)
    assert train.classes == INDOOR
    assert np.bincount(test.targets).tolist() == [1, 1, 1] and len(train) == 9
    assert all(p.endswith("_0000.jpg") for p, _ in test.samples)
    assert all(INDOOR[y] in p for p, y in train.samples)


def test_diabetic5_holds_out_200_per_grade(data_root):
    train = diabetic5.load("train", data_root, image_size=SIZE)
    test = diabetic5.load("test", data_root, image_size=SIZE)
    assert np.bincount(test.targets).tolist() == [200] * 5
    assert np.bincount(train.targets).tolist() == [2] * 5
    assert train.classes[0] == "no DR" and len(train.classes) == 5
    assert not paths(train) & paths(test)
    image, label = test[0]
    assert image.shape == (3, SIZE, SIZE) and label == test.targets[0]


def test_diabetic5_rejects_a_bad_grade(data_root, tmp_path):
    shutil.copytree(data_root / "diabetic_retinopathy", tmp_path / "diabetic_retinopathy")
    table = tmp_path / "diabetic_retinopathy" / "trainLabels.csv"
    table.write_text(table.read_text() + "9_left,7\n")
    with pytest.raises(ValueError, match="level '7' is not a grade"):
        diabetic5.load("train", tmp_path)


def test_query_sets_label_by_sorted_folder(data_root):
    ilsvrc_set = ilsvrc.load(data_root, image_size=SIZE)
    assert ilsvrc_set.classes == [f"thing{i}" for i in range(len(WNIDS))]  # names from synset_words.txt
    assert all(WNIDS[y] in p for p, y in ilsvrc_set.samples)
    open_set = openimages.load(data_root, image_size=SIZE)
    assert open_set.classes == OPENIMAGES and np.bincount(open_set.targets).tolist() == [4] * 4


def test_d2_is_the_union_with_one_coarse_node_per_source_and_no_test_images(data_root):
    union, hierarchy = d2.load(data_root, image_size=SIZE)
    assert list(hierarchy) == list(d2.SOURCES)
    sizes = {k: len(v) for k, v in hierarchy.items()}
    assert sizes == {"ilsvrc": 6, "openimages": 4, "caltech256": 3, "cubs200": 4, "indoor67": 3, "diabetic5": 5}
    flat = [z for ids in hierarchy.values() for z in ids]
    assert flat == list(range(len(union.classes)))  # label ids offset per source, in order
    assert union.classes[6] == "openimages/Apple" and union.classes[10] == "caltech256/ak47"
    for module in (caltech256, cubs200, indoor67, diabetic5):
        assert not paths(module.load("test", data_root)) & paths(union)
        assert paths(module.load("train", data_root)) <= paths(union)


@pytest.mark.parametrize("tau_d, tau_k", [(0.5, 1.0), (1.0, 0.34), (0.5, 0.67)])
def test_semi_open_world_keeps_fractions_of_the_victims_images_and_labels(data_root, tau_d, tau_k):
    closed, _ = d2.load(data_root, image_size=SIZE)
    union, hierarchy = d2.load(data_root, image_size=SIZE, victim="cubs200", tau_d=tau_d, tau_k=tau_k)
    kept = [y for y in union.targets if union.classes[y].startswith("cubs200/")]
    labels_kept = int(np.ceil(tau_k * 4))
    assert len(kept) == int(np.ceil(tau_d * 2 * labels_kept))  # 2 training images per species
    assert set(hierarchy["cubs200"]) == set(kept) and len(set(kept)) <= labels_kept
    assert len(closed) - len(union) == 8 - len(kept)  # only the victim's part shrinks
    again, _ = d2.load(data_root, image_size=SIZE, victim="cubs200", tau_d=tau_d, tau_k=tau_k)
    assert again.samples == union.samples


@pytest.mark.parametrize("bad", [0, 1.5, -0.1, True])
def test_semi_open_world_rejects_fractions_outside_0_1(data_root, bad):
    with pytest.raises(ValueError, match="tau_d"):
        d2.load(data_root, victim="cubs200", tau_d=bad)


def test_unreadable_image_is_skipped_with_a_warning_and_a_readable_one_of_its_label_used(data_root, tmp_path):
    shutil.copytree(data_root / "openimages", tmp_path / "openimages")
    broken = tmp_path / "openimages" / "Cat" / "0200000000000000.jpg"
    broken.write_bytes(b"\xff\xd8 not really a jpeg")
    data = openimages.load(tmp_path, image_size=SIZE)
    index = next(i for i, (p, _) in enumerate(data.samples) if p == str(broken))
    with pytest.warns(RuntimeWarning, match=r"skipping unreadable image .*0200000000000000.jpg.*1 skipped"):
        image, label = data[index]
    assert label == OPENIMAGES.index("Cat") and image.shape == (3, SIZE, SIZE)
    assert torch.equal(image, data[index + 1][0])  # the next image of the same label stands in
    assert data.unreadable == {str(broken)}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a known-bad file is not reported again
        data[index]
    for p in (tmp_path / "openimages" / "Cat").iterdir():
        p.write_bytes(b"garbage")
    with pytest.warns(RuntimeWarning), pytest.raises(RuntimeError, match="every image of label 2 .*'Cat'"):
        openimages.load(tmp_path, image_size=SIZE)[index]


@pytest.mark.parametrize("load, folder, source", [
    (lambda r: caltech256.load("train", r), "256_ObjectCategories", "data.caltech.edu"),
    (lambda r: cubs200.load("test", r), "CUB_200_2011", "cub_200_2011"),
    (lambda r: indoor67.load("train", r), "indoor67", "indoor.html"),
    (lambda r: diabetic5.load("train", r), "diabetic_retinopathy", "kaggle.com"),
    (lambda r: ilsvrc.load(r), "ILSVRC2012", "image-net.org"),
    (lambda r: openimages.load(r), "openimages", "openimages"),
    (lambda r: small_scale.load("tinyimagenet200", "train", r), "tiny-imagenet-200", "cs231n"),
])
def test_a_missing_dataset_names_its_path_layout_and_source(tmp_path, load, folder, source):
    with pytest.raises(DatasetNotFoundError) as err:
        load(tmp_path)
    message = str(err.value)
    assert str(tmp_path / folder) in message and "Expected layout" in message and source in message


def test_a_missing_split_file_is_a_clear_error(data_root, tmp_path):
    shutil.copytree(data_root / "indoor67", tmp_path / "indoor67")
    (tmp_path / "indoor67" / "TestImages.txt").unlink()
    with pytest.raises(DatasetNotFoundError, match="TestImages.txt"):
        indoor67.load("test", tmp_path)


def test_data_root_comes_from_the_environment_or_is_a_clear_error(data_root, monkeypatch):
    monkeypatch.delenv("KNOCKOFF_DATA", raising=False)
    with pytest.raises(ValueError, match="KNOCKOFF_DATA"):
        caltech256.load("test")
    monkeypatch.setenv("KNOCKOFF_DATA", str(data_root))
    assert len(caltech256.load("test")) == 75


@pytest.mark.parametrize("name, shape, classes", [
    ("mnist", (1, 28, 28), 10), ("emnist", (1, 28, 28), 62), ("emnistletters", (1, 28, 28), 27),
    ("fashionmnist", (1, 28, 28), 10), ("kmnist", (1, 28, 28), 10),
    ("cifar10", (3, 32, 32), 10), ("cifar100", (3, 32, 32), 100), ("tinyimagenet200", (3, 32, 32), 3)])
def test_small_scale_datasets_read_torchvisions_formats(data_root, name, shape, classes):
    data = small_scale.load(name, "train", data_root)
    image, label = data[0]
    assert image.shape == shape and image.dtype == torch.float32
    assert len(data.classes) == classes and 0 <= label < classes
    assert len(np.asarray(data.targets)) == len(data)


def test_a_missing_torchvision_dataset_says_how_to_get_it(tmp_path):
    with pytest.raises(DatasetNotFoundError, match=r"(?s)MNIST/raw/.*download=True"):
        small_scale.load("mnist", "train", tmp_path)
    with pytest.raises(DatasetNotFoundError, match="cifar-10-batches-py"):
        victim_data("cifar10", "test", tmp_path)


def test_transforms_keep_the_papers_ratio_at_any_size():
    from PIL import Image
    assert resize_for(224) == 256
    image = Image.new("RGB", (50, 40))
    assert query_transform(32)(image).shape == (3, 32, 32)
    assert victim_training_transform(32)(image).shape == (3, 32, 32)
    with pytest.raises(ValueError, match="image_size"):
        query_transform(3)
