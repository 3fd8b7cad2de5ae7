"""`cnnlab predict` on pictures written from the real MNIST test set: same answers as in-memory evaluation."""

import json

import pytest
import torch
from PIL import Image

from cnnlab.data import datasets
from cnnlab.data.transforms import to_input
from cnnlab.serving import predict
from conftest import cnnlab


@pytest.fixture(scope="module")
def trained(real_data, mnist_cnn_run):
    test = datasets.load("mnist", data_dir=str(real_data)).test
    return mnist_cnn_run, test.x[:20], test.y[:20]


def in_memory_top1(run, x):
    model, _ = predict.load_model(run)
    with torch.inference_mode():
        return model(to_input(x, True)).argmax(1).tolist()


def test_native_pngs_match_in_memory_evaluation(trained, tmp_path):
    run, x, _ = trained
    for i, img in enumerate(x):
        Image.fromarray(img[0].numpy()).save(tmp_path / f"{i:02d}.png")
    r = cnnlab("predict", run, tmp_path, "--json", "--top-k", 5)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert len(out) == 20 and all(len(o["top"]) == 5 for o in out)
    assert [int(o["top"][0]["class"]) for o in out] == in_memory_top1(run, x)
    assert all(abs(sum(t["probability"] for t in o["top"]) - 1) < 0.2 for o in out)


def test_photographed_digits_dark_on_light_and_large(trained, tmp_path):
    """Upscaled to 256x256, inverted to dark ink on white, saved as RGB JPEG: the answers barely move."""
    run, x, _ = trained
    for i, img in enumerate(x):
        big = Image.fromarray(255 - img[0].numpy()).resize((256, 256), Image.BILINEAR).convert("RGB")
        big.save(tmp_path / f"{i:02d}.jpg", quality=90)
    r = cnnlab("predict", run, *sorted(tmp_path.iterdir()), "--json")
    assert r.returncode == 0, r.stderr
    got = [int(o["top"][0]["class"]) for o in json.loads(r.stdout)]
    agree = sum(a == b for a, b in zip(got, in_memory_top1(run, x)))
    assert agree >= 18, f"only {agree}/20 agree after upscaling, inversion and JPEG"


def test_a_broken_file_gets_its_own_error_and_the_rest_still_run(trained, tmp_path):
    run, x, _ = trained
    Image.fromarray(x[0, 0].numpy()).save(tmp_path / "good.png")
    (tmp_path / "notes.png").write_text("not an image")
    r = cnnlab("predict", run, tmp_path / "good.png", tmp_path / "notes.png")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "good.png:" in r.stdout and "notes.png: " in r.stdout and "cannot decode image" in r.stdout
    assert "1 of 2 file(s) could not be classified" in r.stderr


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "P", "L", "LA", "1", "I;16"])
def test_any_mode_becomes_the_models_input(mode):
    img = Image.new(mode, (40, 30))
    for shape in ((1, 28, 28), (3, 32, 32)):
        x = predict.prepare(img, shape)
        assert x.dtype == torch.uint8 and tuple(x.shape) == shape


def test_model_file_stands_alone(trained, tmp_path):
    run, x, _ = trained
    blob = (run / "best.pt").read_bytes()
    (tmp_path / "digits.pt").write_bytes(blob)  # no run folder beside it
    model, about = predict.load_model(tmp_path / "digits.pt")
    assert about["classes"] == [str(d) for d in range(10)] and about["input_shape"] == [1, 28, 28]
    assert in_memory_top1(tmp_path / "digits.pt", x) == in_memory_top1(run, x)
