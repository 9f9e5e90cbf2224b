"""Victim training, pretrained weights and hierarchy building, through the ``knockoff`` CLI."""
import json
import re

import numpy as np
import pytest
import torch

from knockoff_env.models.architectures import build_arch, imagenet_weights_path
from agents.cli import main
from knockoff_env.data import ilsvrc
from knockoff_env.worlds.hierarchy import cluster_labels, load_hierarchy
from knockoff_env.victim.training import class_weights, load_victim

from miniature import CALTECH, cifar_without_checksums, data_root  # noqa: F401


def test_train_victim_for_one_epoch_saves_a_safe_loadable_best_checkpoint(data_root, tmp_path, capsys):
    main(["train-victim", "Caltech256", "--data-root", str(data_root), "--out", str(tmp_path / "v"),
          "--arch", "resnet18", "--pretrained", "none", "--image-size", "32", "--epochs", "1",
          "--batch-size", "4", "--no-progress"])
    assert "victim caltech256 (resnet18): test accuracy" in capsys.readouterr().out
    checkpoint = torch.load(tmp_path / "v" / "checkpoint.pt", weights_only=True)
    assert checkpoint["arch"] == "resnet18" and checkpoint["num_classes"] == 3
    assert checkpoint["class_names"] == CALTECH and checkpoint["dataset"] == "caltech256"
    assert 0 <= checkpoint["accuracy"] <= 1 and checkpoint["epoch"] == 1 and checkpoint["image_size"] == 32
    assert checkpoint["lr"] == 0.1 and checkpoint["class_weights"] is None  # the paper's default recipe
    model, meta = load_victim(tmp_path / "v" / "checkpoint.pt", "caltech256")
    assert meta["accuracy"] == checkpoint["accuracy"]
    assert torch.equal(model.state_dict()["fc.weight"], checkpoint["state_dict"]["fc.weight"])
    with pytest.raises(ValueError, match="is a caltech256 victim, not a cubs200 one"):
        load_victim(tmp_path / "v" / "checkpoint.pt", "cubs200")


def test_diabetic5_recipe_uses_lr_001_and_class_weights(data_root, tmp_path, monkeypatch):
    seen = {}
    real = torch.nn.CrossEntropyLoss

    def spy(*args, **kwargs):
        seen["weight"] = kwargs.get("weight")
        return real(*args, **kwargs)
    monkeypatch.setattr(torch.nn, "CrossEntropyLoss", spy)
    main(["train-victim", "diabetic5", "--data-root", str(data_root), "--out", str(tmp_path),
          "--arch", "resnet18", "--pretrained", "none", "--image-size", "8", "--epochs", "1",
          "--batch-size", "256", "--no-progress"])
    checkpoint = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert checkpoint["lr"] == 0.01
    assert checkpoint["class_weights"] == [1.0] * 5  # the miniature copy is balanced
    assert seen["weight"] is not None and seen["weight"].tolist() == [1.0] * 5


def test_class_weights_are_n_min_over_n_c():
    weights = class_weights(np.array([0] * 30 + [1] * 10 + [2] * 1), 3)
    assert torch.allclose(weights, torch.tensor([1 / 30, 1 / 10, 1.0]))
    with pytest.raises(ValueError, match=r"classes \[3\] have no training image"):
        class_weights(np.array([0, 1, 2]), 4)


def test_missing_imagenet_weights_say_where_to_put_them(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    expected = tmp_path / "hub" / "checkpoints" / "resnet34-b627a593.pth"
    assert imagenet_weights_path("resnet34") == expected
    with pytest.raises(FileNotFoundError) as err:
        build_arch("resnet34", 10, "imagenet")
    assert str(expected) in str(err.value) and "--pretrained PATH" in str(err.value)
    with pytest.raises(ValueError, match="no ImageNet weights exist for 'lenet'"):
        build_arch("lenet", 10, "imagenet")


def test_imagenet_weights_from_the_cache_and_from_a_path_load_all_but_the_classifier(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    source = build_arch("resnet18", 1000)
    path = imagenet_weights_path("resnet18")
    path.parent.mkdir(parents=True)
    torch.save(source.state_dict(), path)
    for pretrained in ("imagenet", path):
        model = build_arch("resnet18", 7, pretrained)
        assert torch.equal(model.conv1.weight, source.conv1.weight)
        assert model.fc.out_features == 7
    cifar = build_arch("resnet18_cifar", 10, "imagenet")  # its 3×3 stem is not copied, the rest is
    assert torch.equal(cifar.layer1[0].conv1.weight, source.layer1[0].conv1.weight)
    torch.save({"state_dict": build_arch("lenet", 10).state_dict()}, tmp_path / "lenet.pt")
    with pytest.raises(ValueError, match="another architecture"):
        build_arch("resnet18", 7, tmp_path / "lenet.pt")
    with pytest.raises(FileNotFoundError, match="not found"):
        build_arch("resnet18", 7, tmp_path / "absent.pt")


def test_build_hierarchy_clusters_every_label_into_a_json_file_the_env_loads(data_root, tmp_path, capsys):
    out = tmp_path / "ilsvrc-3.json"
    main(["build-hierarchy", "ilsvrc", "--data-root", str(data_root), "--clusters", "3", "--out", str(out),
          "--arch", "resnet18", "--pretrained", "none", "--image-size", "32", "--no-progress"])
    assert str(out) in capsys.readouterr().out
    content = json.loads(out.read_text())  # human-readable JSON
    assert content["built_with"]["clusters"] == 3 and content["label_names"]["0"] == "thing0"
    labels = ilsvrc.load(data_root).targets
    hierarchy, names = load_hierarchy(out, labels)
    assert len(hierarchy) == 3 and sorted(z for ids in hierarchy.values() for z in ids) == list(range(6))
    assert names[5] == "thing5"
    assert all(name[:2].isdigit() and name.split(" ", 1)[1].startswith("thing") for name in hierarchy)


def test_clustering_groups_labels_with_close_features():
    features = np.array([[0, 0], [0, 0.1], [10, 10], [10, 10.1], [-9, 5]], dtype=float)
    hierarchy = cluster_labels(features, 3, {i: f"l{i}" for i in range(5)})
    groups = sorted(sorted(v) for v in hierarchy.values())
    assert groups == [[0, 1], [2, 3], [4]]
    with pytest.raises(ValueError, match="clusters=6"):
        cluster_labels(features, 6, {})


@pytest.mark.parametrize("content, message", [
    ('{"a": [0, 1], "b": [1, 2]}', "label 1 is in coarse nodes 'a' and 'b'"),
    ('{"a": 3}', "must map to a non-empty list"),
    ('{"a": [0, "x"]}', "label ids are integers"),
    ('{"a": [0, 1]}', r"query-set labels \[2\] are in no coarse node"),
    ('{"a": [0, 1, 2, 9]}', r"labels \[9\] are not in the query set"),
    ("[1, 2]", "non-empty JSON object"),
    ("{not json", "not valid JSON"),
])
def test_user_hierarchy_files_are_validated_clearly(tmp_path, content, message):
    path = tmp_path / "h.json"
    path.write_text(content)
    with pytest.raises(ValueError, match=message):
        load_hierarchy(path, np.array([0, 1, 2, 2]))


def test_a_plain_user_hierarchy_file_loads(tmp_path):
    path = tmp_path / "h.json"
    path.write_text('{"animals": [2, 0], "things": [1]}')
    assert load_hierarchy(path, np.array([0, 1, 2])) == ({"animals": [2, 0], "things": [1]}, {})


def test_cli_errors_are_messages_not_tracebacks(tmp_path, capsys):
    assert main(["train-victim", "caltech256", "--data-root", str(tmp_path), "--pretrained", "none"]) == 2
    assert re.search(r"knockoff train-victim: error: Caltech256 not found: .*256_ObjectCategories", capsys.readouterr().err)
    assert main(["build-hierarchy", "ilsvrc", "--data-root", str(tmp_path), "--pretrained", "none"]) == 2
    assert re.search("ILSVRC not found", capsys.readouterr().err)
