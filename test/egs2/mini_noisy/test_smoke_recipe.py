"""The mini recipe end to end: ``./run.sh --smoke true`` (every stage, MTL and Gradient Remedy), then resume.

The smoke configuration (tiny corpus, tiny model, one epoch; conf/tuning/train_enh_asr_smoke.yaml) does not
learn: these tests protect the wiring and the recipe's promises, not the numbers. The run happens in a copy
of the recipe (recipes write data/, dump*/, exp*/ in place) whose TEMPLATE, tools and espnet2 are the
repository's. Measured: the smoke run took 572 s and this module 621 s on a shared 2-core machine at load
average ~8, using 5.3 CPU-minutes in all, i.e. about 5 minutes of wall time on an idle 2-core machine.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("espeakng_loader")  # the mini corpus synthesiser's TTS

REPO = Path(__file__).resolve().parents[3]
RECIPE = "mini_noisy/asr_with_enhancement"
TESTS = ("et05_simu_isolated_1ch_track", "et05_real_isolated_1ch_track")
SYSTEMS = {"sum": "enh_asr_train_enh_asr_smoke_sum", "gr": "enh_asr_train_enh_asr_smoke_gr"}
ASR_ROW = r"(\|[0-9.]+){8}\|"  # Snt Wrd Corr Sub Del Ins Err S.Err, all numbers


def make_sandbox(tmp: Path) -> Path:
    """``tmp/main/egs2/<RECIPE>``: a copy of the recipe (symlinks kept) beside links to the repository."""
    main = tmp / "main"
    (main / "egs2").mkdir(parents=True)
    for name in ("tools", "espnet2"):
        (main / name).symlink_to(REPO / name)
    for name in ("TEMPLATE", "chime4"):  # local/prepare_chime4.py links into egs2/chime4
        (main / "egs2" / name).symlink_to(REPO / "egs2" / name)
    dst = main / "egs2" / RECIPE
    shutil.copytree(REPO / "egs2" / RECIPE, dst, symlinks=True,
                    ignore=shutil.ignore_patterns("data", "dump*", "exp*", "downloads", "__pycache__"))
    return dst


def run_sh(recipe: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "cmd_backend": "local", "OMP_NUM_THREADS": "1",
           "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    p = subprocess.run(["./run.sh", "--smoke", "true", *args], cwd=recipe, env=env, capture_output=True,
                       text=True, timeout=1800)
    assert p.returncode == 0, p.stdout[-6000:] + p.stderr[-3000:]
    return p


def mtimes(paths) -> dict:
    return {p: p.stat().st_mtime_ns for p in paths}


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    recipe = make_sandbox(tmp_path_factory.mktemp("smoke"))
    start = time.monotonic()
    p = run_sh(recipe)
    return recipe, p, time.monotonic() - start


@pytest.mark.slow
def test_smoke_run_writes_results_md_with_both_systems(smoke_run):
    recipe, p, seconds = smoke_run
    print(f"smoke run: {seconds:.0f} s")
    results = (recipe / "exp_smoke" / "RESULTS.md").read_text()
    # One row per system in the summary table, with its rule and a numeric WER for each test set
    for rule, name in SYSTEMS.items():
        m = re.search(rf"^\|{name}\|{rule}\|conf/tuning/train_enh_asr_smoke\.yaml\|valid\.acc\.ave\.pth\|[^|]+\|1\|"
                      rf"\d+m\d\ds\|([0-9.]+)\|([0-9.]+)\|$", results, re.M)
        assert m, f"no summary row for {name}:\n{results[:3000]}"
    # ESPnet's WER/CER tables for both systems and both test sets, numbers in every cell
    for name in SYSTEMS.values():
        section = results.split(f"## exp_smoke/{name}\n")[1].split("\n## ")[0]
        for metric in ("WER", "CER"):
            table = section.split(f"### {metric}\n")[1].split("###")[0]
            assert "|dataset|Snt|Wrd|Corr|Sub|Del|Ins|Err|S.Err|" in table
            for t in TESTS:
                assert re.search(rf"^\|decode_asr_smoke_enh_asr_model_valid\.acc\.ave/{t}{ASR_ROW}$", table, re.M), t
        # per noise type and per SNR (utt2condition of the mini corpus: 4 noise types, SNRs 0 and 5 dB)
        for noise in ("BUS", "CAF", "PED", "STR"):
            assert re.search(rf"^\|{TESTS[0]}/noise={noise}{ASR_ROW}$", section, re.M)
        for snr in ("0dB", "5dB"):
            assert re.search(rf"^\|{TESTS[0]}/snr={snr}{ASR_ROW}$", section, re.M)
    # SE: the noisy input and both enhanced outputs of the simulated set; the REAL set (no true clean
    # reference, its spk1.scp is a close-talk recording) is not scored
    se = results.split("## Speech enhancement")[1]
    number = r"\|-?[0-9.]+"
    assert re.search(rf"^\|{TESTS[0]}\|noisy input({number}){{4}}\|$", se, re.M)
    for name in SYSTEMS.values():
        assert re.search(rf"^\|{TESTS[0]}\|{name} enhanced({number}){{4}}\|$", se, re.M)
    assert TESTS[1] not in se
    assert not (recipe / "dump_smoke/raw" / TESTS[1] / "scoring_enh").exists()


@pytest.mark.slow
def test_every_test_utterance_is_decoded_once_by_each_system(smoke_run):
    recipe, _, _ = smoke_run
    for name in SYSTEMS.values():
        for t in TESTS:
            ref = (recipe / "dump_smoke/raw" / t / "text_spk1").read_text().splitlines()
            hyp = (recipe / "exp_smoke" / name / "decode_asr_smoke_enh_asr_model_valid.acc.ave" / t / "text_spk1")
            hyp_ids = [line.split()[0] for line in hyp.read_text().splitlines()]
            assert hyp_ids == [line.split()[0] for line in ref]


@pytest.mark.slow
def test_training_logs_and_plots_the_gradient_diagnostics(smoke_run):
    # ESPnet's reporter plots every reported stat under images/ (--use_matplotlib true): the rule's
    # diagnostics appear beside the training curves, and the GR system reports them in train.log.
    recipe, _, _ = smoke_run
    for name in SYSTEMS.values():
        exp = recipe / "exp_smoke" / name
        for png in ("loss.png", "acc.png", "loss_enh.png", "gr_cos.png", "gr_conflict_rate.png"):
            assert (exp / "images" / png).stat().st_size > 0, f"{name}: no images/{png}"
    log = (recipe / "exp_smoke" / SYSTEMS["gr"] / "train.log").read_text()
    assert re.search(r"1epoch results: \[train\].*gr_cos=[-0-9.e]+.*gr_conflict_rate=", log)
    import yaml

    for rule, name in SYSTEMS.items():  # the rule reached the trainer (saved in ESPnet's config.yaml)
        assert yaml.safe_load((recipe / "exp_smoke" / name / "config.yaml").read_text())["grad_rule"] == rule


@pytest.mark.slow
def test_rerun_skips_completed_work_and_redoes_only_what_was_interrupted(smoke_run):
    """A re-run finds every stage's marker and skips it; an output without its marker (an interrupted
    stage) is redone, and only it.

    The interruption is simulated by deleting the GR system's decoding marker of one test set, which is
    what a killed stage 12 leaves (the marker is written last).
    """
    recipe, _, _ = smoke_run
    exp = recipe / "exp_smoke"
    decode = "decode_asr_smoke_enh_asr_model_valid.acc.ave"
    redo = exp / SYSTEMS["gr"] / decode / TESTS[1]
    kept = [recipe / "data/.done.data_prep", *(recipe / "dump_smoke/raw").glob("*/.done.*"),
            *(recipe / "dump_smoke/raw/org").glob("*/.done.*"), recipe / "data/en_token_list/char/tokens.txt",
            exp / "enh_asr_stats_raw_en_char/.done", recipe / "dump_smoke/raw" / TESTS[0] / "scoring_enh/result_stoi.txt"]
    for name in SYSTEMS.values():
        kept += [exp / name / "1epoch.pth", exp / name / ".done.train", *(exp / name).glob("enhanced_*/spk1.scp"),
                 exp / name / f"enhanced_{TESTS[0]}/scoring_enh/result_stoi.txt"]
        kept += [exp / name / decode / t / "text_spk1" for t in TESTS if exp / name / decode / t != redo]
    before = mtimes(kept)
    (redo / ".done").unlink()
    time.sleep(1.1)  # a rewritten file would get a later mtime

    p = run_sh(recipe, "--stage", "1")
    out = p.stdout
    assert before == mtimes(kept), "a completed output was rewritten"
    assert f"Stage 12: dump_smoke/raw/{TESTS[1]} (16 utterances" in out  # the interrupted decoding, redone
    assert (redo / ".done").is_file() and len((redo / "text_spk1").read_text().splitlines()) == 16
    for stage in (1, 3, 4, 5, 10, 11, 12, 13, 14, 15):
        assert f"Stage {stage}: skipped" in out, f"stage {stage} did not skip its completed work"
    assert out.count("Stage 11: skipped") == 2  # both systems


@pytest.mark.slow
def test_speaker_comparison_fine_tunes_with_the_branch_decodes_and_probes(smoke_run):
    """local/run_speaker_comparison.sh on the smoke outputs (baseline and AL at MID): enh_asr.sh's
    --enh_asr_task enh_s2t_gr_speaker path end to end. The AL system trains on labels made from the
    training set's utt2spk (num_speakers = its speaker count), its schedule length was counted from the
    data (total_steps = the batches it ran: the counter in the checkpoint equals the recorded number),
    its weights start from the base system (init_param), stock decoding ignores the branch, and the
    comparison writes the WER and probing tables with both systems."""
    import torch
    import yaml

    recipe, _, _ = smoke_run
    env = {**os.environ, "cmd_backend": "local", "OMP_NUM_THREADS": "1",
           "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    p = subprocess.run(["local/run_speaker_comparison.sh", "--smoke", "true", "--systems", "baseline al_mid",
                        "--epochs", "1", "--probe_utts", "4", "--probe_epochs", "1"],
                       cwd=recipe, env=env, capture_output=True, text=True, timeout=1800)
    logs = "".join(f.read_text()[-3000:] for f in (recipe / "exp_speaker_smoke/logs").glob("*.log"))
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:] + logs
    exp = recipe / "exp_speaker_smoke"
    speakers = (recipe / "dump_smoke/raw/tr05_multi_noisy/spk2spkid").read_text().splitlines()
    al = yaml.safe_load((exp / "enh_asr_al_mid/config.yaml").read_text())
    branch = al["speaker_branch_conf"]
    assert (branch["mode"], branch["fork"], branch["num_speakers"]) == ("al", "mid", len(speakers))
    state = torch.load(exp / "enh_asr_al_mid/1epoch.pth", map_location="cpu")
    assert int(state["speaker_adversary.step"]) == branch["total_steps"] > 0
    assert al["init_param"] == ["exp_smoke/enh_asr_train_enh_asr_smoke_gr/valid.acc.ave.pth"]
    assert "speaker_branch_conf" not in yaml.safe_load((exp / "enh_asr_baseline/config.yaml").read_text())
    table = (exp / "compare/compare_rules.md").read_text()
    assert re.search(r"^\| baseline \| 0 \| [0-9.]+ \[", table, re.M) and re.search(r"^\| al_mid \| 0 \|", table, re.M)
    probe = (exp / "probe/all/probe.md").read_text()
    assert re.search(r"^\| baseline \|", probe, re.M) and re.search(r"^\| al_mid \|", probe, re.M)


@pytest.mark.slow
def test_rule_comparison_trains_each_rule_and_seed_from_the_shared_start(smoke_run):
    """local/run_rule_comparison.sh on the smoke outputs. From the trained start, every system
    loads the sum system's weights (init_param) and trains with its own rule and seed at a constant
    learning rate; 'asr_only' is the fixed rule with w_se 0, and the table pools both seeds of each
    system under its name. From scratch, nothing is loaded and the config's schedule is kept.
    Unknown systems are refused before anything trains."""
    import yaml

    recipe, _, _ = smoke_run
    env = {**os.environ, "cmd_backend": "local", "OMP_NUM_THREADS": "1",
           "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}

    def compare(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["local/run_rule_comparison.sh", "--smoke", "true", *args], cwd=recipe, env=env,
                              capture_output=True, text=True, timeout=1800)

    p = compare("--systems", "asr_only bogus")
    assert p.returncode == 2 and "unknown system 'bogus'" in p.stdout + p.stderr
    p = compare("--systems", "gr_vector_lag0")
    assert p.returncode == 2 and "integer >= 1" in p.stdout + p.stderr
    assert not (recipe / "exp_rules_smoke/seed1").exists()

    p = compare("--systems", "asr_only sum", "--seeds", "1 2")
    logs = "".join(f.read_text()[-3000:] for f in (recipe / "exp_rules_smoke/logs").glob("*.log"))
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:] + logs
    exp = recipe / "exp_rules_smoke"
    for seed in (1, 2):
        asr = yaml.safe_load((exp / f"seed{seed}/enh_asr_asr_only/config.yaml").read_text())
        assert (asr["grad_rule"], asr["grad_rule_conf"], asr["seed"]) == ("fixed", {"w_se": 0}, seed)
        assert asr["init_param"] == ["exp_smoke/enh_asr_train_enh_asr_smoke_sum/valid.acc.ave.pth"]
        assert asr["scheduler"] is None and asr["optim_conf"]["lr"] == 0.0005  # --lr, constant
        plain = yaml.safe_load((exp / f"seed{seed}/enh_asr_sum/config.yaml").read_text())
        assert (plain["grad_rule"], plain["seed"]) == ("sum", seed)
    table = (exp / "compare/compare_rules.md").read_text()
    assert re.search(r"^\| asr_only \| 1,2 \| [0-9.]+ \[.*\| [+-][0-9.]+ \[", table, re.M), table
    assert re.search(r"^\| sum \| 1,2 \| [0-9.]+ \[.*\| \+0\.00 \[\+0\.00, \+0\.00\] \|", table, re.M), table
    assert (exp / "compare/compare_rules.png").stat().st_size > 0

    p = compare("--start", "scratch", "--systems", "gr gr_vector_lag2", "--seeds", "3")
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    lagged = yaml.safe_load((recipe / "exp_rules_scratch_smoke/seed3/enh_asr_gr_vector_lag2/config.yaml").read_text())
    assert (lagged["grad_rule"], lagged["gr_granularity"], lagged["gr_weights_every"]) == ("gr", "vector", 2)
    assert "gr_w_asr=" in (recipe / "exp_rules_scratch_smoke/seed3/enh_asr_gr_vector_lag2/train.log").read_text()
    scratch_table = (recipe / "exp_rules_scratch_smoke/compare/compare_rules.md").read_text()
    assert re.search(r"^\| gr_vector_lag2 \| 3 \|", scratch_table, re.M), scratch_table
    scratch = yaml.safe_load((recipe / "exp_rules_scratch_smoke/seed3/enh_asr_gr/config.yaml").read_text())
    smoke_config = yaml.safe_load((recipe / "conf/tuning/train_enh_asr_smoke.yaml").read_text())
    assert scratch["init_param"] == [] and scratch["seed"] == 3
    # the smoke config's own learning rate (0.001) and epochs, not the trained start's constant 0.0005
    assert scratch["optim_conf"]["lr"] == smoke_config["optim_conf"]["lr"] != 0.0005
    assert scratch["max_epoch"] == smoke_config["max_epoch"]
