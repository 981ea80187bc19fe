"""Tests of the resume logic of egs2/mini_noisy/asr_with_enhancement/local/run_rule_comparison.sh.

The driver runs in a scratch recipe dir whose ``run.sh`` is a stand-in: it records each call,
writes what stages 11-14 would (config.yaml with the seed, a train.log epoch line, a scoring
result), and fails once for a system marked to fail (an interrupted training). So these tests
check the driver's own bookkeeping in seconds: a finished system is skipped on a re-run, an
unfinished one is redone, a marker written with other options does not count, and a partial
comparison can be summarised from the seeds every system has finished.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
RECIPE = REPO / "egs2/mini_noisy/asr_with_enhancement"
TEST_SET = "et05_simu_isolated_1ch_track"
UTTS = [("s1", "u1"), ("s1", "u2"), ("s2", "u3")]

FAKE_RUN_SH = r"""#!/usr/bin/env bash
# Stand-in for ./run.sh: records "<exp> <stage>" and writes what the stages would.
set -eu
while [ $# -gt 0 ]; do
    case "$1" in
        --enh_asr_exp) exp=$2 ;; --enh_asr_args) args=$2 ;; --stage) stage=$2 ;; --grad_rules) rule=$2 ;;
        --enh_asr_config) config=$2 ;;
    esac
    shift 2
done
echo "${exp} ${stage}" >> calls.txt
echo "${config}" >> configs.txt
seed=${args##*--seed } seed=${seed%% *}
if [ "${stage}" = 11 ]; then
    if [ -e "${exp}.fail" ]; then rm "${exp}.fail"; echo "interrupted" >&2; exit 1; fi
    mkdir -p "${exp}/decode_asr_model/TEST_SET/score_wer"
    printf 'grad_rule: %s\nseed: %s\n' "${rule}" "${seed}" > "${exp}/config.yaml"
    echo "[h] (trainer:1) INFO: 1epoch results: [train] gr_conflict_rate=0.25, train_time=0.5, [valid] loss=1" \
        > "${exp}/train.log"
else
    {
        echo "id: (s1-u1)"; echo "Scores: (#C #S #D #I) 4 1 0 0"
        echo "id: (s1-u2)"; echo "Scores: (#C #S #D #I) 5 0 0 0"
        echo "id: (s2-u3)"; echo "Scores: (#C #S #D #I) 3 2 0 0"
        echo "|  Sum/Avg | 3 15 | 80.0 20.0 0.0 0.0 20.0 66.7 |"
    } > "${exp}/decode_asr_model/TEST_SET/score_wer/result.txt"
fi
""".replace("TEST_SET", TEST_SET)


@pytest.fixture
def recipe(tmp_path: Path) -> Path:
    """A scratch recipe dir: the real driver and compare_rules.py, real utils/ and pyscripts/,
    a stand-in run.sh, and the files the driver checks for (trained start, stats, test data)."""
    (tmp_path / "local").mkdir()
    for name in ("run_rule_comparison.sh", "compare_rules.py"):
        (tmp_path / "local" / name).symlink_to(RECIPE / "local" / name)
    for name in ("utils", "pyscripts"):
        (tmp_path / name).symlink_to((RECIPE / name).resolve())
    (tmp_path / "path.sh").write_text("")
    (tmp_path / "run.sh").write_text(FAKE_RUN_SH)
    (tmp_path / "run.sh").chmod(0o755)
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf/train_enh_asr.yaml").write_text("max_epoch: 1\n")
    base = tmp_path / "exp/enh_asr_train_enh_asr_sum"
    base.mkdir(parents=True)
    (base / "valid.acc.ave.pth").write_bytes(b"")
    (tmp_path / "exp/enh_asr_stats_raw_en_char").mkdir()
    (tmp_path / "exp/enh_asr_stats_raw_en_char/.done").write_text("")
    data = tmp_path / "dump/raw" / TEST_SET
    data.mkdir(parents=True)
    (data / "utt2spk").write_text("".join(f"{u} {s}\n" for s, u in UTTS))
    (data / "utt2condition").write_text("u1 CAF_0dB\nu2 BUS_5dB\nu3 STR_0dB\n")
    return tmp_path


def drive(recipe: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        ["bash", "local/run_rule_comparison.sh", "--python", sys.executable, "--systems", "sum gr",
         "--seeds", "1 2", "--parallel", "1", *args],
        cwd=recipe, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def calls(recipe: Path) -> list:
    path = recipe / "calls.txt"
    return path.read_text().split("\n")[:-1] if path.exists() else []


def seeds_column(recipe: Path) -> dict:
    """``{system: seeds}`` from the first table of exp_rules/compare/compare_rules.md."""
    rows = {}
    for line in (recipe / "exp_rules/compare/compare_rules.md").read_text().splitlines():
        cells = [c.strip() for c in line.split("|")[1:-1]]
        if line.startswith("## "):
            break
        if len(cells) > 2 and cells[0] in ("sum", "gr"):
            rows[cells[0]] = cells[1]
    return rows


def test_interrupted_comparison_is_summarised_then_resumed_without_redoing_finished_systems(recipe):
    # 1. gr's seed-2 training is interrupted: the run fails and names it; the other three
    #    systems have their marker (written last, after scoring).
    (recipe / "exp_rules/seed2").mkdir(parents=True)
    (recipe / "exp_rules/seed2/enh_asr_gr.fail").write_text("")
    p = drive(recipe)
    assert p.returncode == 1, p.stdout + p.stderr
    assert "failed: gr_seed2" in p.stdout
    markers = sorted(f.name for f in (recipe / "exp_rules/logs").glob("*.ok"))
    assert markers == ["gr_seed1.ok", "sum_seed1.ok", "sum_seed2.ok"]
    first = calls(recipe)
    assert len(first) == 7  # 3 systems x (train+decode, score) + gr seed 2's failed training

    # 2. Summarising trains nothing and compares seed 1, the only seed every system finished.
    p = drive(recipe, "--summarise", "true")
    assert p.returncode == 0, p.stdout + p.stderr
    assert "finished seeds 1 (unfinished: gr_seed2)" in p.stdout
    assert calls(recipe) == first
    assert seeds_column(recipe) == {"sum": "1", "gr": "1"}
    md = (recipe / "exp_rules/compare/compare_rules.md").read_text()
    assert "| gr | 0.250 |" in md  # the gradient statistics table, from the train.log line

    # 3. A re-run redoes only the unfinished system and then compares both seeds.
    p = drive(recipe)
    assert p.returncode == 0, p.stdout + p.stderr
    assert calls(recipe)[len(first):] == ["exp_rules/seed2/enh_asr_gr 11", "exp_rules/seed2/enh_asr_gr 14"]
    assert p.stdout.count("finished before") == 3
    assert seeds_column(recipe) == {"sum": "1,2", "gr": "1,2"}


def test_markers_written_with_other_options_or_config_do_not_count(recipe):
    assert drive(recipe).returncode == 0
    n = len(calls(recipe))
    assert n == 8
    # Another learning rate: no system counts as finished, so nothing can be summarised ...
    p = drive(recipe, "--lr", "0.001", "--summarise", "true")
    assert p.returncode == 1 and "no seed has finished for every system" in p.stdout
    # ... and a re-run with the same options again skips everything.
    assert drive(recipe).returncode == 0 and len(calls(recipe)) == n
    # An edited config invalidates every marker: all four systems run again.
    (recipe / "conf/train_enh_asr.yaml").write_text("max_epoch: 2\n")
    assert drive(recipe).returncode == 0 and len(calls(recipe)) == 2 * n
    # So does another config (--train_config, not --config: parse_options.sh sources --config),
    # which every training and scoring call receives.
    (recipe / "conf/other.yaml").write_text("max_epoch: 3\n")
    p = drive(recipe, "--train_config", "conf/other.yaml", "--base_exp", "exp/enh_asr_train_enh_asr_sum")
    assert p.returncode == 0, p.stdout + p.stderr
    assert len(calls(recipe)) == 3 * n
    configs = (recipe / "configs.txt").read_text().split()
    assert configs[2 * n:] == ["conf/other.yaml"] * n and set(configs[:2 * n]) == {"conf/train_enh_asr.yaml"}


def test_bad_summarise_value_is_refused_before_anything_runs(recipe):
    p = drive(recipe, "--summarise", "yes")
    assert p.returncode != 0 and "--summarise is boolean" in p.stderr
    assert calls(recipe) == []
