"""The Python steps of enh_asr.sh (pyscripts/enh_asr/): speed perturbation, BPE, SE score averaging,
per-group ASR scoring and RESULTS.md."""

import importlib.util
import math
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

TEMPLATE = Path(__file__).resolve().parents[3] / "egs2" / "TEMPLATE" / "asr_with_enhancement"
if str(TEMPLATE) not in sys.path:
    sys.path.insert(0, str(TEMPLATE))


def load(name: str):
    spec = importlib.util.spec_from_file_location(name, TEMPLATE / "pyscripts" / "enh_asr" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


perturb_speed = load("perturb_speed")
train_bpe = load("train_bpe")
average_enh_scores = load("average_enh_scores")
score_groups = load("score_groups")
write_results = load("write_results")
from pyscripts.scoring.score_asr import score  # noqa: E402


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


# ---------------------------------------------------------------------------------------------------------------
def make_data_dir(root: Path, n: int = 2, seconds: float = 1.0, fs: int = 16000) -> Path:
    d = root / "src"
    rng = np.random.default_rng(0)
    wav, ref = [], []
    for i in range(n):
        clean = 0.1 * rng.standard_normal(int(seconds * fs))
        noisy = clean + 0.01 * rng.standard_normal(clean.shape)
        sf.write(root / f"u{i}.clean.wav", clean, fs)
        sf.write(root / f"u{i}.noisy.wav", noisy, fs)
        wav.append(f"s{i}_u{i}_SIMU {root}/u{i}.noisy.wav\n")
        ref.append(f"s{i}_u{i}_SIMU {root}/u{i}.clean.wav\n")
    write(d / "wav.scp", "".join(wav))
    write(d / "spk1.scp", "".join(ref))
    write(d / "utt2spk", "".join(f"s{i}_u{i}_SIMU s{i}\n" for i in range(n)))
    write(d / "text_spk1", "".join(f"s{i}_u{i}_SIMU HELLO {i}\n" for i in range(n)))
    write(d / "utt2category", "".join(f"s{i}_u{i}_SIMU SIMU\n" for i in range(n)))
    return d


@pytest.mark.parametrize("factor", ["0.9", "1.1"])
def test_speed_perturbation_changes_the_duration_by_one_over_the_factor(tmp_path, factor):
    # sox speed f plays f times faster: T seconds become T / f seconds at the same sampling rate.
    src = make_data_dir(tmp_path, seconds=1.0)
    dst = tmp_path / "dst"
    assert perturb_speed.main(["--factor", factor, "--audio_dir", str(tmp_path / "audio"), str(src), str(dst)]) == 0
    for scp in ("wav.scp", "spk1.scp"):
        rows = [line.split() for line in (dst / scp).read_text().splitlines()]
        assert [k for k, _ in rows] == [f"sp{factor}-s0_u0_SIMU", f"sp{factor}-s1_u1_SIMU"]
        for _, path in rows:
            info = sf.info(path)
            assert info.samplerate == 16000
            assert info.frames == pytest.approx(16000 / float(factor), abs=2)
    # speakers are perturbed too (Kaldi/ESPnet convention), and the transcript follows the new ids
    assert (dst / "utt2spk").read_text().splitlines()[0] == f"sp{factor}-s0_u0_SIMU sp{factor}-s0"
    assert (dst / "spk2utt").read_text().splitlines()[0] == f"sp{factor}-s0 sp{factor}-s0_u0_SIMU"
    assert (dst / "text_spk1").read_text().splitlines()[1] == f"sp{factor}-s1_u1_SIMU HELLO 1"
    assert not (tmp_path / "dst.tmp").exists()


def test_speed_perturbation_keeps_noisy_equal_to_clean_plus_noise(tmp_path):
    # The same linear resampling on input and reference: noisy - clean stays the perturbed noise, so the
    # perturbed pair is still a valid SE training pair (their difference has the noise's scale, 0.01).
    src = make_data_dir(tmp_path, n=1)
    dst = tmp_path / "dst"
    perturb_speed.main(["--factor", "0.9", "--audio_dir", str(tmp_path / "audio"), str(src), str(dst)])
    noisy, _ = sf.read((dst / "wav.scp").read_text().split()[1])
    clean, _ = sf.read((dst / "spk1.scp").read_text().split()[1])
    assert noisy.shape == clean.shape
    assert 0.005 < np.std(noisy - clean) < 0.02


def test_speed_perturbation_rejects_a_pipe_naming_the_utterance(tmp_path, capsys):
    src = make_data_dir(tmp_path, n=1)
    write(src / "wav.scp", "s0_u0_SIMU sox x.wav -t wav - |\n")
    assert perturb_speed.main(["--factor", "0.9", "--audio_dir", str(tmp_path / "a"), str(src), str(tmp_path / "d")]) == 1
    assert "s0_u0_SIMU" in capsys.readouterr().err


def test_bpe_model_has_the_requested_vocabulary_and_no_bos_eos(tmp_path):
    # ESPnet's tokens.txt adds <blank>, <unk>, <sos/eos> itself: the sentencepiece model must not have bos/eos.
    import sentencepiece as spm

    words = "RED GREEN BLUE YELLOW ORANGE PURPLE CAR BUS TRAIN STREET GARDEN KITCHEN OPEN CLOSE CALL STOP".split()
    rng = np.random.default_rng(0)
    lines = "".join(f"u{i} {' '.join(rng.choice(words, 5))}\n" for i in range(200))
    text = write(tmp_path / "text", lines)
    assert train_bpe.main(["--input", str(text), "--model_prefix", str(tmp_path / "bpe" / "bpe"), "--vocab_size", "30"]) == 0
    sp = spm.SentencePieceProcessor(model_file=str(tmp_path / "bpe" / "bpe.model"))
    assert sp.get_piece_size() == 30
    assert sp.bos_id() == -1 and sp.eos_id() == -1
    assert sp.id_to_piece(sp.unk_id()) == "<unk>"


def test_bpe_reports_a_vocabulary_smaller_than_the_characters(tmp_path, capsys):
    text = write(tmp_path / "text", "u1 ABCDEFGHIJ\n")
    assert train_bpe.main(["--input", str(text), "--model_prefix", str(tmp_path / "m"), "--vocab_size", "5"]) == 1
    assert "Vocabulary size is smaller than required_chars" in capsys.readouterr().err


def test_bpe_rejects_a_line_without_transcript(tmp_path, capsys):
    text = write(tmp_path / "text", "u1 A B\nu2\n")
    assert train_bpe.main(["--input", str(text), "--model_prefix", str(tmp_path / "m"), "--vocab_size", "5"]) == 1
    assert f"{text}:2" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------------------------
def test_enh_scores_of_all_jobs_are_merged_and_averaged(tmp_path):
    # Two jobs of espnet2.bin.enh_scoring, three utterances: the mean is over utterances, not over jobs.
    write(tmp_path / "o1" / "STOI_spk1", "a 90\nb 80\n")
    write(tmp_path / "o2" / "STOI_spk1", "c 40\n")
    write(tmp_path / "o1" / "wav_spk1", "a x.wav\nb y.wav\n")  # not a metric
    write(tmp_path / "o2" / "wav_spk1", "c z.wav\n")
    out = tmp_path / "out"
    assert average_enh_scores.main(["--output_dir", str(out), str(tmp_path / "o1"), str(tmp_path / "o2")]) == 0
    assert float((out / "result_stoi.txt").read_text()) == pytest.approx(70.0)
    assert (out / "STOI_spk1").read_text() == "a 90.0\nb 80.0\nc 40.0\n"
    assert not (out / "result_wav.txt").exists()


def test_an_utterance_scored_twice_is_an_error(tmp_path, capsys):
    write(tmp_path / "o1" / "SDR_spk1", "a 1\n")
    write(tmp_path / "o2" / "SDR_spk1", "a 2\n")
    assert average_enh_scores.main(["--output_dir", str(tmp_path / "out"), str(tmp_path / "o1"), str(tmp_path / "o2")]) == 1
    assert "utterance a was scored by two jobs" in capsys.readouterr().err


def test_mean_ignores_nan():
    assert average_enh_scores.mean_score({"a": 1.0, "b": math.nan, "c": 3.0}) == 2.0


# ---------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "spec, name, path, field",
    [
        ("utt2condition", "condition", "utt2condition", None),
        ("noise=utt2condition:1", "noise", "utt2condition", 1),
        ("d/utt2condition:2", "condition2", "d/utt2condition", 2),
    ],
)
def test_grouping_specifications(spec, name, path, field):
    g = score_groups.Grouping(spec)
    assert (g.name, str(g.path), g.field) == (name, path, field)


def make_scored_set(tmp_path: Path) -> Path:
    """Four utterances, two noise types x two SNRs; errors only in the CAF utterances."""
    utts = {"A_1_BUS": ("BUS_0dB", "A B C", "A B C"), "A_2_BUS": ("BUS_5dB", "A B", "A B"),
            "B_3_CAF": ("CAF_0dB", "A B C D", "A X C"), "B_4_CAF": ("CAF_5dB", "A B", "A B E")}
    data = tmp_path / "data"
    write(data / "text_spk1", "".join(f"{u} {r}\n" for u, (_, r, _) in utts.items()))
    write(data / "hyp", "".join(f"{u} {h}\n" for u, (_, _, h) in utts.items()))
    write(data / "utt2spk", "".join(f"{u} {u[0]}\n" for u in utts))
    write(data / "utt2condition", "".join(f"{u} {c}\n" for u, (c, _, _) in utts.items()))
    score(str(data / "text_spk1"), str(data / "hyp"), str(tmp_path / "score_wer"), "word", str(data / "utt2spk"))
    return data


def sum_avg(result: Path):
    return write_results.parse_sclite_sum(result)


def test_per_group_scores_count_only_the_groups_utterances(tmp_path):
    # CAF: refs "A B C D" -> "A X C" (1 sub, 1 del) and "A B" -> "A B E" (1 ins): 3 errors over 6 words = 50%.
    # BUS: no error over 5 words. The groups' word counts add up to the whole set's 11 words.
    data = make_scored_set(tmp_path)
    rc = score_groups.main(["--score_dir", str(tmp_path / "score_wer"), "--utt2spk", str(data / "utt2spk"),
                            f"noise={data}/utt2condition:1", f"snr={data}/utt2condition:2"])
    assert rc == 0
    caf = sum_avg(tmp_path / "score_wer/by_noise/CAF/result.txt")
    bus = sum_avg(tmp_path / "score_wer/by_noise/BUS/result.txt")
    assert (caf["Snt"], caf["Wrd"], caf["Sub"], caf["Del"], caf["Ins"], caf["Err"]) == ("2", "6", "16.7", "16.7", "16.7", "50.0")
    assert (bus["Wrd"], bus["Err"]) == ("5", "0.0")
    snr0 = sum_avg(tmp_path / "score_wer/by_snr/0dB/result.txt")
    assert (snr0["Snt"], snr0["Wrd"]) == ("2", "7")  # A_1_BUS (3 words) + B_3_CAF (4 words)
    whole = sum_avg(tmp_path / "score_wer/result.txt")
    assert int(whole["Wrd"]) == int(caf["Wrd"]) + int(bus["Wrd"])


def test_an_utterance_missing_from_a_group_file_is_an_error(tmp_path, capsys):
    data = make_scored_set(tmp_path)
    write(data / "utt2condition", "A_1_BUS BUS_0dB\n")
    rc = score_groups.main(["--score_dir", str(tmp_path / "score_wer"), "--utt2spk", str(data / "utt2spk"),
                            str(data / "utt2condition")])
    assert rc == 1
    assert "utterance 'A_2_BUS' has no value" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------------------------
def make_exp(root: Path, name: str, rule: str, data: Path, metrics: dict) -> Path:
    exp = root / "exp" / name
    write(exp / "config.yaml", f"grad_rule: {rule}\nconfig: conf/train.yaml\n")
    write(exp / "train.log", "    Total Number of model parameters: 2.78 M\n"
          "[vm] 2026 (trainer:1) INFO: 1epoch results: [train] loss=1\n"
          "[vm] 2026 (trainer:1) INFO: 2epoch results: [train] loss=1\n")
    write(exp / "train_wall_time_s", "100\n25\n")  # two attempts (a resumed training)
    dec = exp / "decode_asr_enh_asr_model_valid.acc.ave" / "test"
    score(str(data / "text_spk1"), str(data / "hyp"), str(dec / "score_wer"), "word", str(data / "utt2spk"))
    score(str(data / "text_spk1"), str(data / "hyp"), str(dec / "score_cer"), "char", str(data / "utt2spk"))
    for m, v in metrics.items():
        write(exp / "enhanced_test" / "scoring_enh" / f"result_{m.lower()}.txt", f"{v}\n")
    return exp


def test_results_md_has_one_row_per_system_with_numbers(tmp_path):
    data = make_scored_set(tmp_path)
    for m, v in {"STOI": 80.0, "SI_SNR": 3.5}.items():
        write(tmp_path / "dump" / "test" / "scoring_enh" / f"result_{m.lower()}.txt", f"{v}\n")
    sumx = make_exp(tmp_path, "enh_asr_small_sum", "sum", data, {"STOI": 85.0, "SI_SNR": 8.25})
    grx = make_exp(tmp_path, "enh_asr_small_gr", "gr", data, {"STOI": 86.0, "SI_SNR": 9.0})
    (tmp_path / "exp" / "enh_asr_stats_raw").mkdir()  # ESPnet's stats dir is not a system
    out = tmp_path / "RESULTS.md"
    rc = write_results.main(["--dumpdir", str(tmp_path / "dump"), "--test_sets", "test", "--se_metrics", "STOI",
                             "SI_SNR", "--inference_tag", "decode_asr_enh_asr_model_valid.acc.ave",
                             "--inference_model", "valid.acc.ave.pth", "--output", str(out),
                             str(sumx), str(grx), str(tmp_path / "exp/enh_asr_stats_raw")])
    assert rc == 0
    text = out.read_text()
    # The systems table: rule, parameters, last epoch, summed wall time (125 s) and the test set's WER, which is
    # 3 errors / 11 words = 27.3% (see make_scored_set).
    assert "|enh_asr_small_sum|sum|conf/train.yaml|valid.acc.ave.pth|2.78M|2|2m05s|27.3|" in text
    assert "|enh_asr_small_gr|gr|conf/train.yaml|valid.acc.ave.pth|2.78M|2|2m05s|27.3|" in text
    assert "enh_asr_stats_raw" not in text
    # ESPnet's table format, one WER and one CER table per system
    header = "|dataset|Snt|Wrd|Corr|Sub|Del|Ins|Err|S.Err|"
    assert text.count(header) == 4
    row = re.compile(r"^\|decode_asr_enh_asr_model_valid\.acc\.ave/test(\|[0-9.]+){8}\|$", re.M)
    assert len(row.findall(text)) == 4
    # SE: the noisy input once, then each system's enhanced output
    assert "|test|noisy input|80.00|3.50|" in text
    assert "|test|enh_asr_small_sum enhanced|85.00|8.25|" in text
    assert "|test|enh_asr_small_gr enhanced|86.00|9.00|" in text
    assert re.search(r"- date: `\d{4}-\d\d-\d\d", text)


def test_results_md_reports_a_broken_score_file(tmp_path, capsys):
    data = make_scored_set(tmp_path)
    exp = make_exp(tmp_path, "enh_asr_x", "gr", data, {})
    write(exp / "decode_asr_enh_asr_model_valid.acc.ave/test/score_wer/result.txt", "no table\n")
    rc = write_results.main(["--dumpdir", str(tmp_path), "--test_sets", "test", "--inference_tag", "x",
                             "--inference_model", "m.pth", "--output", str(tmp_path / "R.md"), str(exp)])
    assert rc == 1
    assert "score_wer/result.txt" in capsys.readouterr().err
