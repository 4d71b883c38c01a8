import numpy as np
import pytest

from engine import poses
from engine.component import Resources
from engine.errors import RealcalError
from engine.generate import GenerationRequest
from engine.generate.controlnet import ControlNetGenerator, model_available
from engine.generate.pose_sources import PoseSample
from tests.tiny_models import save_tiny_controlnet_pipeline


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return save_tiny_controlnet_pipeline(tmp_path_factory.mktemp("tiny"))


def _pose(w=64, h=64):
    k = np.zeros((17, 3))
    k[:, 0] = np.linspace(10, w - 10, 17)
    k[:, 1] = np.linspace(8, h - 8, 17)
    k[:, 2] = 2
    return PoseSample(k, {}, [1], [1], {"rotate_deg": 0})


def test_tiny_pipeline_round_trips_through_the_user_loading_code(tiny):
    base, cn = tiny
    steps = []
    gen = ControlNetGenerator(base=str(base), controlnet=str(cn), steps=2, width=64, height=64,
                              batch_size=2, device="cpu", allow_cpu=True, scheduler="unipc")
    gen.setup(Resources(progress=lambda s, n, msg: steps.append((s, n))))
    reqs = [GenerationRequest(i, 100 + i, 64, 64, pose=_pose(), prompt="a photo of the man")
            for i in range(3)]
    out = gen.generate(reqs)
    assert len(out) == 3 and out[0].image.shape == (64, 64, 3) and out[0].image.dtype == np.uint8
    assert steps[:2] == [(1, 2), (2, 2)]
    assert out[0].lineage["params"]["scheduler"] == "unipc" and out[0].lineage["seed"] == 100
    assert np.array_equal(out[0].persons[0].keypoints, poses.as_keypoints(reqs[0].pose.keypoints))
    again = gen.generate(reqs[:1])[0]
    assert np.array_equal(again.image, out[0].image)          # same seed, same sample (CPU)


def test_conditioning_map_uses_openpose_colours():
    gen = ControlNetGenerator(width=64, height=64)
    pose = _pose()
    pose.keypoints[0] = (55, 4, 2)           # a nose well away from every other joint
    pose.keypoints[1:5] = 0                  # no eyes or ears near it
    m = gen.conditioning_map(GenerationRequest(0, 0, 64, 64, pose=pose))
    assert m.shape == (64, 64, 3) and m.any()
    nose = pose.keypoints[0]
    assert tuple(m[int(nose[1]), int(nose[0])]) == poses.OPENPOSE_COLOURS[0]


def test_openpose_neck_from_shoulders_and_head_from_lsp_extras():
    k = np.zeros((17, 3))
    k[poses.KP["left_shoulder"]] = (30, 20, 2)
    k[poses.KP["right_shoulder"]] = (10, 20, 2)
    op = poses.to_openpose18(k, None)
    assert tuple(op[1]) == (20, 20, 1) and op[0, 2] == 0
    op = poses.to_openpose18(k, {"neck": [20, 18, 2], "head_top": [20, 0, 2]})
    assert tuple(op[1]) == (20, 18, 1) and op[0, 2] == 1 and op[0, 1] == pytest.approx(18 - 0.6 * 18)


def test_no_gpu_and_missing_weights_are_said_plainly(tiny, tmp_path):
    with pytest.raises(RealcalError, match="needs a CUDA GPU"):
        ControlNetGenerator(device="cpu").setup()
    with pytest.raises(RealcalError, match="not in the local Hugging Face cache"):
        ControlNetGenerator(device="cpu", allow_cpu=True).setup()
    ok, why = model_available(str(tmp_path / "nope"))
    assert not ok and "does not exist" in why


def test_bad_parameters():
    with pytest.raises(RealcalError, match="scheduler: .* is not one of"):
        ControlNetGenerator(scheduler="magic")
    with pytest.raises(RealcalError, match="multiples of 8"):
        ControlNetGenerator(width=100)
