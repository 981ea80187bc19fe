"""Tests of egs2/mini_noisy/asr_with_enhancement/local/compare_rules.py.

Synthetic experiment dirs (config.yaml, per-utterance scoring results, training time files)
with known counts: the table must show the hand-computed pooled WERs, identical systems must
get identical intervals, the bootstrap interval must cover the true WER at about its nominal
rate in a seeded simulation, and inconsistent inputs must be refused with a clear error.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[3]
RECIPE = REPO / "egs2/mini_noisy/asr_with_enhancement"
sys.path.insert(0, str(RECIPE / "local"))
import compare_rules  # noqa: E402
from compare_rules import CompareError, System, bootstrap, compare  # noqa: E402

UTTS = ("u1", "u2", "u3", "u4")
SPK = {"u1": "s1", "u2": "s1", "u3": "s2", "u4": "s2"}
COND = {"u1": "CAF_0dB", "u2": "BUS_5dB", "u3": "STR_0dB", "u4": "PED_5dB"}
REF_WORDS = {"u1": 10, "u2": 10, "u3": 5, "u4": 5}


def write_data_dir(root: Path) -> Path:
    data = root / "dump/raw/et05_simu"
    data.mkdir(parents=True)
    (data / "utt2spk").write_text("".join(f"{u} {SPK[u]}\n" for u in UTTS))
    (data / "utt2condition").write_text("".join(f"{u} {COND[u]}\n" for u in UTTS))
    return data


def write_system(root: Path, rule: str, seed: int, errors, wall=None, train_times=(), upper=False):
    """An experiment dir whose result.txt gives utterance u ``errors[u]`` substitutions
    out of REF_WORDS[u] words (ids ``<spk>-<utt>``, lower-cased as sclite prints them
    unless ``upper``)."""
    exp = root / f"exp_seed{seed}/enh_asr_{rule}"
    score = exp / "decode_asr/et05_simu/score_wer"
    score.mkdir(parents=True)
    (exp / "config.yaml").write_text(f"grad_rule: {rule}\nseed: {seed}\n")
    lines = ["SYSTEM SUMMARY PERCENTAGES by SPEAKER", "", "DUMP OF SYSTEM ALIGNMENT STRUCTURE", ""]
    for u in UTTS:
        sid = f"{SPK[u]}-{u}"
        c, s = REF_WORDS[u] - errors[u], errors[u]
        lines += [f"id: ({sid.upper() if upper else sid})", f"Scores: (#C #S #D #I) {c} {s} 0 0",
                  "REF:  x", "HYP:  x", "Eval:", ""]  # fmt: skip
    (score / "result.txt").write_text("\n".join(lines) + "\n")
    if wall is not None:
        (exp / "train_wall_time_s").write_text("".join(f"{w}\n" for w in wall))
    if train_times:
        log = [f"[host] 2026-01-01 (trainer:1) INFO: {i}epoch results: [train] iter_time=0.1, "
               f"train_time={t}, loss=1.0, [valid] loss=2.0" for i, t in enumerate(train_times, 1)]  # fmt: skip
        (exp / "train.log").write_text("\n".join(log) + "\n")
    return exp


SUM = {1: dict(u1=1, u2=2, u3=0, u4=3), 2: dict(u1=2, u2=2, u3=1, u4=1)}
GR = {1: dict(u1=0, u2=1, u3=0, u4=1), 2: dict(u1=1, u2=1, u3=0, u4=0)}


@pytest.fixture
def grid(tmp_path):
    """Two rules x two seeds; training cost of sum: 600 s and 1200 s, train_time 0.5/0.7."""
    data = write_data_dir(tmp_path)
    exps = [
        write_system(tmp_path, "sum", 1, SUM[1], wall=[200, 400], train_times=(0.5, 0.7)),
        write_system(tmp_path, "sum", 2, SUM[2], wall=[1200], train_times=(0.5, 0.7)),
        write_system(tmp_path, "gr", 1, GR[1]),
        write_system(tmp_path, "gr", 2, GR[2], upper=True),
    ]
    return data, exps


def test_table_shows_hand_computed_pooled_wers_per_rule_and_snr(grid, tmp_path):
    """sum: (6 + 6) errors over 2 x 30 words = 20.00 %; gr: (2 + 2) / 60 = 6.67 %;
    difference -13.33. Per SNR (0 dB: u1, u3 = 15 words per seed): sum 0 dB =
    (1 + 0 + 2 + 1) / 30 = 13.33 %, 5 dB = (2 + 3 + 2 + 1) / 30 = 26.67 %; gr 0 dB =
    1 / 30 = 3.33 %, 5 dB = 3 / 30 = 10.00 %. Wall time of sum: mean(600, 1200) s =
    15.0 min; train_time per iteration: mean(0.5, 0.7) = 0.600 s."""
    data, exps = grid
    out = tmp_path / "cmp"
    lines = compare(exps, data, out, n_boot=500)
    table = "\n".join(lines)
    assert (out / "compare_rules.md").read_text() == table + "\n"
    main_table = lines[: next(i for i, line in enumerate(lines) if line.startswith("## "))]
    row = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]]
           for line in main_table if line.startswith(("| sum", "| gr"))}  # fmt: skip
    assert row["sum"][0] == "1,2" and row["sum"][1].startswith("20.00 [")
    assert row["gr"][1].startswith("6.67 [") and row["gr"][2].startswith("-13.33 [")
    assert row["sum"][2] == "+0.00 [+0.00, +0.00]"
    assert row["sum"][3:] == ["15.0", "0.600"] and row["gr"][3:] == ["-", "-"]
    group_rows = [line for line in lines if line.startswith("| system | 0dB | 5dB |")]
    assert group_rows, table
    start = lines.index(group_rows[0])
    assert lines[start + 2].startswith("| gr | 3.33 [") and "| 10.00 [" in lines[start + 2]
    assert lines[start + 3].startswith("| sum | 13.33 [") and "| 26.67 [" in lines[start + 3]
    assert (out / "compare_rules.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_intervals_contain_the_estimate_and_improvement_is_significant(grid, tmp_path):
    """Every interval contains its point estimate; gr's errors are below sum's on every
    utterance-and-seed pair but one tie, so the paired difference interval is negative."""
    data, exps = grid
    rules = compare_rules.by_rule([compare_rules.load_system(
        e, e / "decode_asr/et05_simu/score_wer/result.txt",
        compare_rules.utterance_ids(data / "utt2spk"), "grad_rule") for e in exps])  # fmt: skip
    wer, delta = bootstrap(rules, list(UTTS), 2000, np.random.default_rng(1), "sum")
    for est in (*wer.values(), *delta.values()):
        assert est.low <= est.value <= est.high
    assert delta["gr"].high < 0


def test_identical_systems_get_identical_intervals(tmp_path):
    """Two rules with the same per-utterance errors for each seed see the same (shared)
    utterance and seed resamples, so their WERs and intervals are equal and their
    difference is exactly 0."""
    data = write_data_dir(tmp_path)
    exps = [write_system(tmp_path, rule, seed, SUM[seed]) for rule in ("a", "sum") for seed in (1, 2)]
    lines = compare(exps, data, tmp_path / "cmp", n_boot=300, group_field=None)
    rows = [line.split("|")[3:5] for line in lines if line.startswith(("| a ", "| sum "))]
    assert rows[0][0] == rows[1][0]
    assert rows[0][1].strip() == "+0.00 [+0.00, +0.00]"


def test_bootstrap_interval_covers_the_true_wer_at_nominal_rate():
    """Seeded simulation: 200 test sets of 150 utterances drawn from a population with a
    known WER (heterogeneous per-utterance error rates, 2 seeds with seed noise); the 95%
    interval must cover the population's WER in about 95% of the test sets (0.88-0.99
    allows the simulation's own sampling error, sd ~1.5 points)."""
    rng = np.random.default_rng(1234)
    pop = 20000
    n_pop = rng.integers(3, 20, size=pop)
    p_pop = rng.beta(2, 10, size=pop)  # mean error rate ~0.17, varying by utterance
    true_wer = 100 * float((n_pop * p_pop).sum() / n_pop.sum())
    covered = 0
    trials = 200
    for _ in range(trials):
        pick = rng.choice(pop, size=150, replace=False)
        utts = [f"u{i}" for i in range(150)]
        ref = {u: int(n_pop[i]) for u, i in zip(utts, pick)}
        systems = []
        for seed in (1, 2):
            p = np.clip(p_pop[pick] * rng.normal(1.0, 0.05), 0, 1)
            errors = {u: int(rng.binomial(ref[u], p[k])) for k, u in enumerate(utts)}
            systems.append(System(Path(f"s{seed}"), "r", seed, errors, ref, None, None))
        wer, _ = bootstrap({"r": systems}, utts, 400, rng, None)
        covered += wer["r"].low <= true_wer <= wer["r"].high
    assert 0.88 <= covered / trials <= 0.99, covered / trials


def test_cli_prints_the_table_and_returns_1_with_a_clear_message_on_bad_input(grid, tmp_path, capsys):
    data, exps = grid
    args = [*map(str, exps), "--data_dir", str(data), "--out_dir", str(tmp_path / "o"), "--n_boot", "200"]
    assert compare_rules.main(args) == 0
    assert "| gr | 1,2 | 6.67 [" in capsys.readouterr().out
    (exps[2] / "config.yaml").write_text("grad_rule: gr\n")
    assert compare_rules.main(args) == 1
    assert "config.yaml: no 'seed' entry" in capsys.readouterr().err


def test_inconsistent_systems_are_refused(tmp_path):
    """Different utterance sets, a missing seed of one rule, a duplicated seed and an
    unknown utterance id are errors naming the experiment or file."""
    data = write_data_dir(tmp_path)
    a = write_system(tmp_path, "sum", 1, SUM[1])
    b = write_system(tmp_path, "gr", 1, GR[1])
    c = write_system(tmp_path, "gr", 2, GR[2])
    with pytest.raises(CompareError, match=r"rule 'sum' has seeds \[1\] but rule 'gr' has \[1, 2\]"):
        compare([a, b, c], data, tmp_path / "o", n_boot=200)
    dup = tmp_path / "dup"
    dup.mkdir()
    twin = write_system(dup, "gr", 1, GR[1])
    with pytest.raises(CompareError, match="rule 'gr' has seed 1 twice"):
        compare([a, b, twin], data, tmp_path / "o", n_boot=200)
    result = b / "decode_asr/et05_simu/score_wer/result.txt"
    result.write_text(result.read_text().replace("s2-u4", "s2-u9"))
    with pytest.raises(CompareError, match=r"result.txt:\d+: utterance id 's2-u9' is not in utt2spk"):
        compare([a, b], data, tmp_path / "o", n_boot=200)
    result.write_text(result.read_text().split("id: (s2-u9)")[0])
    with pytest.raises(CompareError, match=r"enh_asr_gr: scores other utterances .*missing e.g. \['u4'\]"):
        compare([a, b], data, tmp_path / "o", n_boot=200)
    assert not (tmp_path / "o" / "compare_rules.md").exists()


def test_reads_results_written_by_the_recipe_scorer(tmp_path):
    """The per-utterance counts come from the recipe's own scorer (sclite when installed,
    else its built-in aligner): 'a b c' -> 'a x c d' is 1 substitution + 1 insertion."""
    sys.path.insert(0, str(RECIPE))
    from pyscripts.scoring.score_asr import score

    data = write_data_dir(tmp_path)
    (data / "text").write_text("u1 a b c\nu2 d e\nu3 f\nu4 g h\n")
    hyp = tmp_path / "hyp"
    hyp.write_text("u1 a x c d\nu2 d e\nu3 f\nu4 g\n")
    score_dir = tmp_path / "score_wer"
    score(str(data / "text"), str(hyp), str(score_dir), "word", str(data / "utt2spk"))
    ids = compare_rules.utterance_ids(data / "utt2spk")
    errors, ref_words = compare_rules.read_result(score_dir / "result.txt", ids)
    assert errors == {"u1": 2, "u2": 0, "u3": 0, "u4": 1}
    assert ref_words == {"u1": 3, "u2": 2, "u3": 1, "u4": 2}


def test_systems_named_by_nested_config_keys_with_a_name_for_none(tmp_path):
    """The speaker-branch comparison names systems by speaker_branch_conf.mode and .fork
    ('al_mid'); the baseline's config has an empty speaker_branch_conf and takes
    --missing_name. A system with only one of the keys is refused (its name would be
    ambiguous)."""
    data = write_data_dir(tmp_path)
    base = write_system(tmp_path, "sum", 1, SUM[1])
    al = write_system(tmp_path, "gr", 1, GR[1])
    (base / "config.yaml").write_text("speaker_branch_conf: {}\nseed: 1\n")
    (al / "config.yaml").write_text("speaker_branch_conf: {mode: al, fork: mid}\nseed: 1\n")
    lines = compare(
        [base, al], data, tmp_path / "o", name_key="speaker_branch_conf.mode,speaker_branch_conf.fork",
        baseline="baseline", n_boot=200, missing_name="baseline",
    )
    rows = {}  # the overall table comes first; the per-SNR table repeats the names
    for line in lines:
        if line.startswith("| ") and "seeds" not in line:
            rows.setdefault(line.split(" | ")[0][2:], line)
    # pooled WER of GR[1]: 2 errors / 30 words; vs the baseline's 6 / 30
    assert rows["al_mid"].split(" | ")[2].startswith("6.67 ")
    assert rows["al_mid"].split(" | ")[3].startswith("-13.33 ")
    (al / "config.yaml").write_text("speaker_branch_conf: {mode: al}\nseed: 1\n")
    with pytest.raises(CompareError, match="config.yaml: no 'speaker_branch_conf.fork' entry"):
        compare([base, al], data, tmp_path / "o", name_key="speaker_branch_conf.mode,speaker_branch_conf.fork",
                baseline="baseline", n_boot=200, missing_name="baseline")


def test_optional_name_key_and_renames(tmp_path):
    """The rule comparison names systems by grad_rule plus the fixed rule's weight when it has one
    (``grad_rule_conf.w_se?``): 'sum' stays 'sum' (no w_se), the fixed rule with w_se 0 becomes
    'fixed_0' and --rename turns that into 'asr_only' (the SE loss gives no gradient)."""
    data = write_data_dir(tmp_path)
    base = write_system(tmp_path, "sum", 1, SUM[1])
    asr = write_system(tmp_path, "gr", 1, GR[1])
    (base / "config.yaml").write_text("grad_rule: sum\ngrad_rule_conf: {}\nseed: 1\n")
    (asr / "config.yaml").write_text("grad_rule: fixed\ngrad_rule_conf: {w_se: 0}\nseed: 1\n")
    lines = compare(
        [base, asr], data, tmp_path / "o", name_key="grad_rule,grad_rule_conf.w_se?",
        n_boot=200, renames=compare_rules.parse_renames("fixed_0=asr_only"),
    )
    names = [line.split(" | ")[0][2:] for line in lines if line.startswith("| ") and "seeds" not in line]
    assert names[:2] == ["asr_only", "sum"]
    # asr_only scores GR[1]: 2 errors / 30 words, vs sum's 6 / 30
    row = next(line for line in lines if line.startswith("| asr_only | "))
    assert row.split(" | ")[2].startswith("6.67 ") and row.split(" | ")[3].startswith("-13.33 ")
    # without the '?', a system lacking the key is refused
    with pytest.raises(CompareError, match="no 'grad_rule_conf.w_se' entry"):
        compare([base, asr], data, tmp_path / "o", name_key="grad_rule,grad_rule_conf.w_se", n_boot=200)
    for bad, message in [("fixed_0", "expected old=new"), ("a=b,a=c", "'a' is renamed twice"), ("=x", "old=new")]:
        with pytest.raises(CompareError, match=message):
            compare_rules.parse_renames(bad)


def test_name_key_dir_names_systems_by_their_experiment_dir(tmp_path):
    """Systems that share grad_rule but differ in other options (exact vs lagged
    whole-vector GR) are named by their dirs, less 'enh_asr_'; seeds still come from
    config.yaml, so the two seeds of one system pool into one row."""
    data = write_data_dir(tmp_path)
    exps = [write_system(tmp_path, "gr_vector_lag4", seed, GR[seed]) for seed in (1, 2)]
    exps += [write_system(tmp_path, "gr_vector", seed, SUM[seed]) for seed in (1, 2)]
    for exp in exps:  # every config says grad_rule gr: the key alone would merge them
        seed = exp.parent.name.removeprefix("exp_seed")
        (exp / "config.yaml").write_text(f"grad_rule: gr\nseed: {seed}\n")
    lines = compare(exps, data, tmp_path / "o", name_key="dir", baseline="gr_vector", n_boot=200)
    names = [line.split(" | ")[0][2:] for line in lines if line.startswith("| ") and "seeds" not in line]
    assert names[:2] == ["gr_vector", "gr_vector_lag4"]
    assert "| gr_vector_lag4 | 1,2 | 6.67 [" in "\n".join(lines)  # GR[1], GR[2]: 4 errors / 60 words


def test_gradient_statistics_are_averaged_over_epochs_then_seeds(tmp_path):
    """The table of the trainer's gradient statistics: per system the mean over the
    epochs of the [train] means in train.log (a [valid] value of the same name is not
    read, a nan epoch is left out), then the mean over seeds. gr seed 1: conflict rate
    (0.2 + 0.4) / 2 = 0.3, seed 2: 0.5 (its second epoch is nan) -> 0.400; norm ratio
    seed 1 (2 + 4) / 2 = 3, seed 2 (1 + 1) / 2 = 1 -> 2.000. sum logs no gr_w_drift:
    '-' there; a system whose log has none of the statistics adds no column."""
    data = write_data_dir(tmp_path)
    logs = {
        ("gr", 1): [("gr_conflict_rate=0.2", "gr_norm_ratio=2.0", "gr_w_drift=0.1"),
                    ("gr_conflict_rate=0.4", "gr_norm_ratio=4.0", "gr_w_drift=0.3")],
        ("gr", 2): [("gr_conflict_rate=0.5", "gr_norm_ratio=1.0", "gr_w_drift=0.2"),
                    ("gr_conflict_rate=nan", "gr_norm_ratio=1.0", "gr_w_drift=0.2")],
        ("sum", 1): [("gr_conflict_rate=0.1", "gr_norm_ratio=5.0")],
        ("sum", 2): [("gr_conflict_rate=0.3", "gr_norm_ratio=7.0")],
    }  # fmt: skip
    exps = []
    for (rule, seed), epochs in logs.items():
        exp = write_system(tmp_path, rule, seed, (GR if rule == "gr" else SUM)[seed])
        lines = [f"[h] 2026 (trainer:1) INFO: {i}epoch results: [train] iter_time=0.1, {', '.join(stats)}, "
                 f"train_time=0.5, [valid] gr_conflict_rate=0.9, loss=2.0"
                 for i, stats in enumerate(epochs, 1)]  # fmt: skip
        (exp / "train.log").write_text("\n".join(lines) + "\n")
        exps.append(exp)
    lines = compare(exps, data, tmp_path / "o", n_boot=200, group_field=None)
    start = lines.index("| system | gr_conflict_rate | gr_norm_ratio | gr_w_drift |")
    assert lines[start + 2] == "| gr | 0.400 | 2.000 | 0.200 |"
    assert lines[start + 3] == "| sum | 0.200 | 6.000 | - |"
