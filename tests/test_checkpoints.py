import os

import pytest
import torch

from cnnlab.core import checkpoints
from cnnlab.core.errors import CnnlabError


def test_nested_state_roundtrip(tmp_path):
    opt = torch.optim.Adam(torch.nn.Linear(3, 2).parameters())
    opt.zero_grad()
    sum(p.sum() for g in opt.param_groups for p in g["params"]).backward()
    opt.step()
    state = {"epoch": 3, "lr": 1e-3, "best": None, "history": [{"loss": 0.5}], "optimizer": opt.state_dict(),
             "rng": torch.get_rng_state(), "nested": {"w": torch.arange(4.0)}}
    checkpoints.save(tmp_path / "s.pt", state)
    back = checkpoints.load(tmp_path / "s.pt")
    assert back["epoch"] == 3 and back["best"] is None and back["history"] == [{"loss": 0.5}]
    assert torch.equal(back["rng"], state["rng"]) and torch.equal(back["nested"]["w"], torch.arange(4.0))
    assert set(back["optimizer"]["state"]) == {0, 1}  # integer keys survive
    assert torch.equal(back["optimizer"]["state"][0]["exp_avg"], state["optimizer"]["state"][0]["exp_avg"])


def test_truncated_checkpoint_is_a_clear_error(tmp_path):
    checkpoints.save(tmp_path / "s.pt", {"w": torch.ones(1000)})
    blob = (tmp_path / "s.pt").read_bytes()
    (tmp_path / "s.pt").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(CnnlabError, match="not a readable cnnlab checkpoint"):
        checkpoints.load(tmp_path / "s.pt")


def test_pickle_checkpoint_is_not_executed(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path}/pwned",))
    torch.save({"model": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(CnnlabError):
        checkpoints.load(tmp_path / "evil.pt")
    assert not (tmp_path / "pwned").exists()


def test_failed_write_keeps_the_previous_file(tmp_path, monkeypatch):
    checkpoints.save(tmp_path / "last.pt", {"epoch": 1})

    def disk_full(fd):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(CnnlabError, match="No space left on device.*previous version is untouched"):
        checkpoints.save(tmp_path / "last.pt", {"epoch": 2})
    monkeypatch.undo()
    assert checkpoints.load(tmp_path / "last.pt")["epoch"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]  # no temporary file left behind


def test_flipped_byte_fails_the_checksum_and_the_previous_file_is_used(tmp_path):
    checkpoints.save(tmp_path / "last.pt", {"epoch": 1, "w": torch.zeros(100)}, keep_previous=True)
    checkpoints.save(tmp_path / "last.pt", {"epoch": 2, "w": torch.ones(100)}, keep_previous=True)
    blob = bytearray((tmp_path / "last.pt").read_bytes())
    blob[-10] ^= 0xFF  # inside the tensor data: the file still parses, only the checksum can tell
    (tmp_path / "last.pt").write_bytes(bytes(blob))
    with pytest.raises(CnnlabError, match="checksum mismatch"):
        checkpoints.load(tmp_path / "last.pt")
    state, warning = checkpoints.load_latest(tmp_path / "last.pt")
    assert state["epoch"] == 1 and "checksum mismatch" in warning and "previous checkpoint" in warning


def test_load_latest_when_only_the_previous_survived(tmp_path):
    assert checkpoints.load_latest(tmp_path / "last.pt") == (None, None)
    checkpoints.save(tmp_path / "last.pt", {"epoch": 1}, keep_previous=True)
    checkpoints.save(tmp_path / "last.pt", {"epoch": 2}, keep_previous=True)
    (tmp_path / "last.pt").unlink()  # as if killed between the two renames
    state, warning = checkpoints.load_latest(tmp_path / "last.pt")
    assert state["epoch"] == 1 and "missing" in warning


def test_edited_metadata_fails_the_checksum(tmp_path):
    checkpoints.save(tmp_path / "s.pt", {"lr": 0.01, "w": torch.ones(3)})
    blob = (tmp_path / "s.pt").read_bytes()
    (tmp_path / "s.pt").write_bytes(blob.replace(b"0.01", b"0.91"))  # same length: still valid safetensors
    with pytest.raises(CnnlabError, match="checksum mismatch"):
        checkpoints.load(tmp_path / "s.pt")
