"""utils/split_scp.pl and utils/filter_scp.pl."""

import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

TEMPLATE = Path(__file__).resolve().parents[3] / "egs2" / "TEMPLATE" / "asr_with_enhancement"
UTILS = TEMPLATE / "utils"
sys.path.insert(0, str(TEMPLATE))

from pyscripts.utils.scp_tools import chunk_sizes  # noqa: E402


def tool(name, *args, stdin=None):
    return subprocess.run([str(UTILS / name), *map(str, args)], capture_output=True, text=True, input=stdin)


def test_split_keeps_order_in_near_equal_contiguous_parts(tmp_path):
    lines = [f"u{i} /w/{i}.wav" for i in range(7)]
    (tmp_path / "in.scp").write_text("".join(x + "\n" for x in lines))
    outs = [tmp_path / f"p.{j}" for j in (1, 2, 3)]
    assert tool("split_scp.pl", tmp_path / "in.scp", *outs).returncode == 0
    parts = [o.read_text().splitlines() for o in outs]
    # 7 = 3 + 2 + 2: the first 7 % 3 parts take the extra line; concatenation is the input.
    assert [len(p) for p in parts] == [3, 2, 2]
    assert sum(parts, []) == lines


def test_split_into_more_parts_than_lines_is_an_error(tmp_path):
    (tmp_path / "in.scp").write_text("a 1\nb 2\n")
    p = tool("split_scp.pl", tmp_path / "in.scp", *(tmp_path / f"p.{j}" for j in (1, 2, 3)))
    assert p.returncode == 1
    assert "(2 lines) into 3 parts" in p.stderr
    assert not (tmp_path / "p.1").exists()


@given(st.integers(1, 500), st.integers(1, 50))
@settings(max_examples=200, deadline=None)
def test_chunk_sizes_cover_all_lines_and_differ_by_at_most_one(n, k):
    if k > n:
        return
    sizes = chunk_sizes(n, k)
    assert sum(sizes) == n and max(sizes) - min(sizes) <= 1 and sizes == sorted(sizes, reverse=True)


@pytest.fixture
def scp(tmp_path):
    (tmp_path / "in.scp").write_text("a x1\nb x2\nc x3\nd  x2 tail\n")
    (tmp_path / "ids").write_text("c\nx2 whatever\na\n")
    return tmp_path


def test_filter_keeps_listed_keys_in_input_order(scp):
    p = tool("filter_scp.pl", scp / "ids", scp / "in.scp")
    assert p.returncode == 0 and p.stdout == "a x1\nc x3\n"


def test_filter_exclude_and_stdin(scp):
    p = tool("filter_scp.pl", "--exclude", scp / "ids", stdin=(scp / "in.scp").read_text())
    assert p.stdout == "b x2\nd  x2 tail\n"  # lines are printed unchanged


def test_filter_on_another_field(scp):
    p = tool("filter_scp.pl", "-f", "2", scp / "ids", scp / "in.scp")
    assert p.stdout == "b x2\nd  x2 tail\n"
    p = tool("filter_scp.pl", "-f", "3", scp / "ids", scp / "in.scp")
    assert p.returncode == 1 and "in.scp:1: has 2 field(s), -f 3 needs 3" in p.stderr
