"""enh_asr.sh: option handling, checked before any stage runs (nothing is written).

The script runs from a recipe directory (it sources ./path.sh and ./cmd.sh there, as ESPnet's does);
the mini recipe is used. Every call below fails or exits in the option checks, before stage 1.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
RECIPE = REPO / "egs2" / "mini_noisy" / "asr_with_enhancement"
REQUIRED = ["--train_set", "tr", "--valid_set", "dv", "--test_sets", "et", "--enh_asr_config", "conf/train_enh_asr.yaml"]


def run(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    before = sorted(p.name for p in RECIPE.iterdir())
    p = subprocess.run(["./enh_asr.sh", *args], cwd=RECIPE, capture_output=True, text=True, env=env, timeout=120)
    # Option errors must not leave anything behind in the recipe dir (no data/, dump/, exp/).
    assert sorted(p.name for p in RECIPE.iterdir()) == before
    return p


def test_help_lists_the_stages_and_the_espnet_options():
    # ESPnet users expect --help to print the usage and exit 0, with ESPnet's option names.
    p = run("--help")
    assert p.returncode == 0, p.stderr
    for option in ("--stage", "--stop_stage", "--ngpu", "--num_nodes", "--nj", "--inference_nj", "--gpu_inference",
                   "--fs", "--train_set", "--valid_set", "--test_sets", "--enh_asr_config", "--inference_config",
                   "--use_lm", "--lm_config", "--token_type", "--nbpe", "--speed_perturb_factors",
                   "--min_wav_duration", "--max_wav_duration", "--expdir", "--dumpdir", "--inference_model",
                   "--enh_asr_args", "--inference_args", "--enh_asr_tag", "--local_data_opts", "--grad_rule",
                   "--enh_asr_task"):
        assert option in p.stdout, f"--help does not document {option}"
    assert "11: joint SE+ASR training" in p.stdout and "16: RESULTS.md" in p.stdout


def test_unknown_option_is_an_error_naming_it():
    p = run("--no_such_option", "1", *REQUIRED)
    assert p.returncode != 0
    assert "no_such_option" in p.stderr


def test_boolean_option_rejects_a_non_boolean():
    p = run("--use_lm", "maybe", *REQUIRED)
    assert p.returncode != 0
    assert "use_lm" in p.stderr


@pytest.mark.parametrize("missing", ["--train_set", "--valid_set", "--test_sets", "--enh_asr_config"])
def test_each_required_option_is_checked(missing):
    i = REQUIRED.index(missing)
    p = run(*(REQUIRED[:i] + REQUIRED[i + 2:]))
    assert p.returncode == 2
    assert f"{missing} is required" in p.stdout + p.stderr


def test_unknown_grad_rule_lists_the_trainers_rules():
    # The rule names come from the trainer's registry, so a typo fails before hours of stages 1-10.
    p = run(*REQUIRED, "--grad_rule", "gradremedy")
    assert p.returncode == 2
    out = p.stdout + p.stderr
    assert "unknown --grad_rule 'gradremedy'" in out
    for rule in ("sum", "gr", "pcgrad"):
        assert f" {rule}" in out


@pytest.mark.parametrize(
    "args, message",
    [
        (["--token_type", "phn"], "--token_type must be bpe, char or word"),
        (["--audio_format", "mp3"], "--audio_format must be wav or flac"),
        (["--feats_type", "fbank"], "only --feats_type raw"),
        (["--enh_asr_config", "conf/no_such.yaml"], "no_such.yaml: no such file"),
        (["--use_lm", "true"], "--use_lm true needs --lm_config"),
        (["--enh_asr_task", "asr"], "--enh_asr_task must be enh_s2t_gr or enh_s2t_gr_speaker"),
    ],
)
def test_invalid_values_are_rejected_with_the_reason(args, message):
    p = run(*REQUIRED, *args)
    assert p.returncode == 2
    assert message in p.stdout + p.stderr


def test_positional_arguments_are_rejected():
    p = run(*REQUIRED, "extra")
    assert p.returncode == 2
    assert "No positional arguments are required" in p.stdout + p.stderr


def sandbox(tmp_path: Path) -> Path:
    """A copy of the mini recipe (symlinks kept) beside links to the repository's TEMPLATE and tools."""
    import shutil

    main = tmp_path / "main"
    (main / "egs2").mkdir(parents=True)
    (main / "tools").symlink_to(REPO / "tools")
    (main / "egs2" / "TEMPLATE").symlink_to(REPO / "egs2" / "TEMPLATE")
    dst = main / "egs2" / "mini_noisy" / "asr_with_enhancement"
    shutil.copytree(RECIPE, dst, symlinks=True, ignore=shutil.ignore_patterns("data", "dump*", "exp*", "downloads"))
    return dst


def test_training_never_resumes_a_checkpoint_of_other_options(tmp_path):
    """ESPnet resumes from checkpoint.pth; a dir left by a training with another rule (or config, or data)
    must not be resumed silently under the new options: stage 11 stops and says what to do."""
    recipe = sandbox(tmp_path)
    stats = recipe / "exp" / "enh_asr_stats_raw_en_char"
    stats.mkdir(parents=True)
    (stats / ".done").write_text("stats\n")  # stage 10 complete
    exp = recipe / "exp" / "enh_asr_x"
    exp.mkdir()
    (exp / "checkpoint.pth").write_bytes(b"")  # an interrupted training...
    (exp / ".train_signature").write_text("another rule\n")  # ...started with other options
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    p = subprocess.run(["./enh_asr.sh", *REQUIRED, "--lang", "en", "--token_type", "char", "--use_lm", "false", "--grad_rule", "gr",
                        "--enh_asr_tag", "x", "--stage", "11", "--stop_stage", "11"],
                       cwd=recipe, capture_output=True, text=True, env=env, timeout=120)
    assert p.returncode == 1
    assert "exp/enh_asr_x holds a training with other data, config or options" in p.stdout
    assert not (exp / "train.log").exists()  # nothing was launched
