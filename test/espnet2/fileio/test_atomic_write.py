"""espnet2.fileio.atomic_write: the result, data-dir and checkpoint writers of espnet2 and the recipes use it.

What users rely on: a reader never sees a half-written file (a failed writer leaves the old content
and no temporary file), and results written on a shared cluster are readable by the group (0644, or
the mode the file already had; mkstemp alone would leave 0600)."""

from __future__ import annotations

import os
import stat

import pytest
import torch

from espnet2.fileio.atomic_write import atomic_path, atomic_writer, write_lines_atomic


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_new_file_gets_0644_and_no_temporary_file_remains(tmp_path):
    target = tmp_path / "new" / "dir" / "table.txt"  # missing parents are made
    write_lines_atomic(target, ["a 1", "b 2"])
    assert target.read_text() == "a 1\nb 2\n"
    assert _mode(target) == 0o644
    assert sorted(p.name for p in target.parent.iterdir()) == ["table.txt"]


def test_existing_file_keeps_its_mode(tmp_path):
    target = tmp_path / "result.txt"
    target.write_text("old\n")
    os.chmod(target, 0o640)
    with atomic_writer(target) as f:
        f.write("new\n")
    assert target.read_text() == "new\n" and _mode(target) == 0o640


def test_a_failing_writer_leaves_the_old_content_and_no_temporary_file(tmp_path):
    target = tmp_path / "result.txt"
    target.write_text("old\n")
    with pytest.raises(RuntimeError, match="disk full"):
        with atomic_writer(target) as f:
            f.write("half")
            raise RuntimeError("disk full")
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["result.txt"]
    with pytest.raises(RuntimeError):
        with atomic_path(tmp_path / "absent.pth"):
            raise RuntimeError("killed")
    assert [p.name for p in tmp_path.iterdir()] == ["result.txt"]  # an absent target stays absent


def test_atomic_path_is_a_hidden_name_beside_the_target_with_the_suffix(tmp_path):
    """savefig infers the format from the suffix; torch.save takes any name."""
    target = tmp_path / "model.pth"
    with atomic_path(target, suffix=".tmp") as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(".model.pth.") and tmp.name.endswith(".tmp")
        assert not target.exists()  # nothing visible until the block succeeds
        torch.save({"w": torch.arange(3)}, tmp)
    assert torch.equal(torch.load(target)["w"], torch.arange(3))
    assert [p.name for p in tmp_path.iterdir()] == ["model.pth"]
