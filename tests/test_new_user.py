"""What a new user tripped over, done exactly as they did it, with the better outcome asserted."""

import pytest

from conftest import cnnlab, picture_folder


def one_line_exit_2(r, *needles):
    assert r.returncode == 2, r.stdout + r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    for n in needles:
        assert n in r.stderr, r.stderr


@pytest.mark.parametrize("k", ["-1", "0"])
def test_predict_top_k_below_one_is_refused(mnist_cnn_run, tmp_path, k):
    picture_folder(tmp_path / "pics", size=(28, 28))
    r = cnnlab("predict", mnist_cnn_run, tmp_path / "pics", "--top-k", k)
    one_line_exit_2(r, f"top-k must be a whole number of at least 1, got {k}")


def test_predict_on_a_text_file_says_so_once(mnist_cnn_run, tmp_path):
    (tmp_path / "notes.txt").write_text("not a picture")
    r = cnnlab("predict", mnist_cnn_run, tmp_path / "notes.txt")
    assert r.stdout.strip() == f"{tmp_path / 'notes.txt'}: cannot decode image (not a readable PNG, JPEG, BMP, GIF, WebP or TIFF)"
    assert "BytesIO" not in r.stdout + r.stderr and r.returncode == 2


@pytest.mark.parametrize("typo, meant", [("train_subet=3000", "train_subset"), ("optimiser.lr=0.1", "optimizer.lr"),
                                         ("early_stoping.patience=3", "early_stopping.patience")])
def test_a_mistyped_key_names_the_nearest_one(tmp_path, typo, meant):
    r = cnnlab("train", "mnist-cnn", "--set", typo, "--runs", tmp_path)
    one_line_exit_2(r, f"did you mean '{meant}'?")
    assert len(r.stderr) < 200  # not the 55 keys


def test_help_shows_what_each_option_does_and_its_default():
    wide = {"COLUMNS": "200"}  # argparse wraps to the terminal's width
    train = cnnlab("train", "--help", env=wide).stdout
    for option, default in (("--epochs", "mnist-cnn 5"), ("--batch-size", "mnist-cnn 32"), ("--seed", "default 0"),
                            ("--val-split", "mnist-cnn 0.1")):
        assert default in " ".join(train.split(option, 2)[2].split()[:40]), option
    assert "default 3" in cnnlab("predict", "--help", env=wide).stdout
    assert "default best" in cnnlab("evaluate", "--help", env=wide).stdout


def test_train_subset_shrinks_the_validation_hold_out_too(real_data, tmp_path):
    r = cnnlab("train", "mlp", "--dataset", "mnist", "--epochs", 1, "--set", "train_subset=3000", "--set",
               "test_subset=100", "--runs", tmp_path, env={"CNNLAB_DATA": real_data})
    assert r.returncode == 0, r.stderr
    assert "3000 train / 333 validation (sampled in proportion to train_subset) / 100 test images" in r.stdout


def test_a_run_that_fails_before_its_first_epoch_leaves_no_folder(tmp_path):
    picture_folder(tmp_path / "tiny", size=(6, 6))  # too small for mnist-cnn's convolutions
    r = cnnlab("train", "mnist-cnn", "--data", tmp_path / "tiny", "--runs", tmp_path / "runs")
    one_line_exit_2(r)
    assert not (tmp_path / "runs" / "mnist-cnn-tiny").exists()


def test_the_cache_says_where_it_is_and_can_be_cleared(tmp_path):
    picture_folder(tmp_path / "pics", size=(28, 28))
    env = {"CNNLAB_CACHE": str(tmp_path / "cache")}
    r = cnnlab("train", "mnist-cnn", "--data", tmp_path / "pics", "--epochs", 1, "--runs", tmp_path / "runs", env=env)
    assert r.returncode == 0, r.stderr
    assert "cached the arrays" in r.stdout and str(tmp_path / "cache" / "decoded") in r.stdout
    listing = cnnlab("cache", env=env).stdout
    assert str(tmp_path / "cache") in listing and "decoded arrays" in listing
    cleared = cnnlab("cache", "--clear", env=env)
    assert cleared.returncode == 0 and "freed" in cleared.stdout
    assert not (tmp_path / "cache" / "decoded").exists()


def test_the_cifar10_jpeg_copy_in_cnnlab_data_is_found_and_named(real_data, tmp_path):
    """CNNLAB_DATA holds cifar10-jpeg.tar.gz and no genuine CIFAR-10: `datasets` names the copy, and training the
    CIFAR-10 MLP uses it (no download attempt), under its own name in the run and its figures."""
    env = {"CNNLAB_DATA": str(real_data)}
    listing = cnnlab("datasets", env=env).stdout
    assert f"the CIFAR-10 (JPEG copy) {real_data / 'cifar10-jpeg.tar.gz'} is used instead" in listing
    r = cnnlab("train", "mlp", "--epochs", 1, "--set", "train_subset=500", "--set", "test_subset=100",
               "--runs", tmp_path, env=env)
    assert r.returncode == 0, r.stderr
    assert "download" not in r.stdout + r.stderr and (tmp_path / "mlp-cifar10-jpeg").is_dir()
    summary = cnnlab("compare", tmp_path / "mlp-cifar10-jpeg", env=env).stdout
    assert "CIFAR-10 (JPEG copy)" in summary


def test_a_run_trained_on_a_relative_path_evaluates_from_another_folder(tmp_path):
    """`cnnlab train --data ../pics` in one folder, `cnnlab evaluate` from another: the run names its data
    absolutely, so the second command finds it."""
    import subprocess
    import sys
    picture_folder(tmp_path / "pics", size=(28, 28))
    (tmp_path / "work").mkdir()

    def run(*args, cwd):
        return subprocess.run([sys.executable, "-m", "cnnlab", *map(str, args)], capture_output=True, text=True,
                              cwd=cwd)
    trained = run("train", "mnist-cnn", "--data", "../pics", "--epochs", 1, "--runs", "runs", cwd=tmp_path / "work")
    assert trained.returncode == 0, trained.stderr
    assert f'data = "{tmp_path / "pics"}"' in (tmp_path / "work" / "runs" / "mnist-cnn-pics" / "config.toml").read_text()
    evaluated = run("evaluate", tmp_path / "work" / "runs" / "mnist-cnn-pics", cwd="/")
    assert evaluated.returncode == 0, evaluated.stderr
    assert "test accuracy" in evaluated.stdout
    again = run("train", "mnist-cnn", "--data", "../pics", "--epochs", 1, "--runs", "runs", cwd=tmp_path / "work")
    assert again.returncode == 0 and "already finished" in again.stdout  # the same run, not "other settings"


def test_a_copied_run_folder_is_registered_by_runs_scan(mnist_cnn_run, tmp_path):
    import json
    import shutil
    shutil.copytree(mnist_cnn_run, tmp_path / "copied" / "mnist-cnn")
    before = cnnlab("runs", "--runs", tmp_path / "here")
    assert "no recorded runs" in before.stdout
    r = cnnlab("runs", "--runs", tmp_path / "here", "--scan", tmp_path / "copied")
    assert r.returncode == 0, r.stderr
    result = json.loads((mnist_cnn_run / "results.json").read_text())
    assert "registered 1 run folder(s)" in r.stdout and "finished" in r.stdout
    assert f"{result['test']['accuracy']:.4f}" in r.stdout
    again = cnnlab("runs", "--runs", tmp_path / "here", "--scan", tmp_path / "copied")
    assert "registered 0 run folder(s)" in again.stdout and again.stdout.count("finished") == 1
    compared = cnnlab("compare", "mnist-cnn", "--runs", tmp_path / "here")
    assert compared.returncode == 0 and "| mnist-cnn | mnist-cnn | MNIST | finished |" in compared.stdout


def test_moved_data_is_found_by_its_digest(tmp_path):
    """The picture folder a run trained on is moved into the data folder: evaluate finds it there by the digest
    the run recorded, and says so; data of the same name but other content is not taken for it."""
    import shutil
    picture_folder(tmp_path / "pics", size=(28, 28))
    trained = cnnlab("train", "mnist-cnn", "--data", tmp_path / "pics", "--epochs", 1, "--runs", tmp_path / "runs")
    assert trained.returncode == 0, trained.stderr
    run = tmp_path / "runs" / "mnist-cnn-pics"
    (tmp_path / "store").mkdir()
    shutil.move(tmp_path / "pics", tmp_path / "store" / "pics")
    lost = cnnlab("evaluate", run)
    one_line_exit_2(lost, "no such file or folder")
    found = cnnlab("evaluate", run, env={"CNNLAB_DATA": str(tmp_path / "store")})
    assert found.returncode == 0, found.stderr
    assert "test accuracy" in found.stdout
    picture_folder(tmp_path / "other" / "pics", size=(28, 28), per_class=5)  # same name, other content
    impostor = cnnlab("evaluate", run, env={"CNNLAB_DATA": str(tmp_path / "other")})
    one_line_exit_2(impostor, "no such file or folder")
