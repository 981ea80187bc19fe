"""The ``espnet2.bin.enh_s2t_gr_train`` entry point, and the round trip from its
experiment directory to ESPnet's stock inference (``--enh_s2t_task true``)."""

import io
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile
import yaml

from espnet2.bin import enh_s2t_gr_train
from espnet2.bin.enh_inference import SeparateSpeech
from espnet2.tasks.enh_s2t_gr import EnhS2TGRTask

FS = 16000
CHARS = list("abcde")

TINY_CONFIG = {
    "enh_encoder": "stft",
    "enh_encoder_conf": {"n_fft": 128, "hop_length": 32},
    "enh_decoder": "stft",
    "enh_decoder_conf": {"n_fft": 128, "hop_length": 32},
    "enh_separator": "tcn",
    "enh_separator_conf": {
        "num_spk": 1, "layer": 2, "stack": 1, "bottleneck_dim": 16, "hidden_dim": 16
    },
    "enh_criterions": [
        {"name": "si_snr", "conf": {}, "wrapper": "fixed_order",
         "wrapper_conf": {"weight": 0.3}}
    ],
    "asr_weight": 0.7,
    "frontend": "default",
    "frontend_conf": {"fs": FS, "n_fft": 128, "hop_length": 64, "n_mels": 20},
    "normalize": "utterance_mvn",
    "asr_encoder": "transformer",
    "asr_encoder_conf": {
        "output_size": 16, "attention_heads": 2, "linear_units": 16, "num_blocks": 1
    },
    "asr_decoder": "transformer",
    "asr_decoder_conf": {"attention_heads": 2, "linear_units": 16, "num_blocks": 1},
    "asr_model_conf": {"ctc_weight": 0.3, "extract_feats_in_collect_stats": False},
    "optim": "adam",
    "batch_type": "folded",
    "batch_size": 2,
    "max_epoch": 1,
    "num_att_plot": 0,
    "best_model_criterion": [["valid", "acc", "max"]],
    "keep_nbest_models": 1,
}


def test_entry_point_uses_the_task_parser_including_asr_weight():
    # --print_config (what users run to see every option) exits 0 ...
    with pytest.raises(SystemExit) as exit_info:
        enh_s2t_gr_train.main(["--print_config"])
    assert exit_info.value.code in (0, None)
    # ... and lists the task's options with their defaults (ESPnet's print_config
    # writes to the sys.stdout bound at import time, so read it into a buffer).
    buf = io.StringIO()
    EnhS2TGRTask.print_config(file=buf)
    printed = yaml.safe_load(buf.getvalue())
    assert printed["asr_weight"] == 1.0
    assert "enh_criterions" in printed and "model_conf" in printed
    args = enh_s2t_gr_train.get_parser().parse_args(["--asr_weight", "0.7"])
    assert args.asr_weight == 0.7


def _write_data(root: Path, n_utt: int, categories) -> Path:
    rng = np.random.default_rng(len(str(root)))
    data = root / "data"
    (data / "wav").mkdir(parents=True)
    files = {k: [] for k in ("wav.scp", "spk1.scp", "text_spk1", "speech_shape")}
    for i in range(n_utt):
        utt = f"utt{i:02d}_{categories[i % len(categories)]}"
        n = 8000 - 400 * i
        clean = 0.1 * rng.standard_normal(n).astype(np.float32)
        noisy = clean + 0.05 * rng.standard_normal(n).astype(np.float32)
        soundfile.write(data / "wav" / f"{utt}.wav", noisy, FS)
        soundfile.write(data / "wav" / f"{utt}_ref.wav", clean, FS)
        files["wav.scp"].append(f"{utt} {data / 'wav' / f'{utt}.wav'}")
        files["spk1.scp"].append(f"{utt} {data / 'wav' / f'{utt}_ref.wav'}")
        files["text_spk1"].append(f"{utt} {''.join(rng.choice(CHARS, 4))}")
        files["speech_shape"].append(f"{utt} {n}")
    for name, lines in files.items():
        (data / name).write_text("\n".join(lines) + "\n")
    return data


def _run(args, log: Path):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    with log.open("w") as f:
        proc = subprocess.run(
            [sys.executable, "-m", *args], stdout=f, stderr=subprocess.STDOUT, env=env
        )
    assert proc.returncode == 0, log.read_text()[-3000:]


@pytest.mark.slow
def test_trained_experiment_decodes_with_stock_espnet_inference(tmp_path):
    # Train one epoch through the CLI, then decode and enhance with ESPnet's stock
    # inference on the experiment's own config.yaml (which holds asr_weight and
    # the gradient-rule trainer's options) and checkpoint.
    data = _write_data(tmp_path, 6, ["SIMU", "REAL", "CLEAN"])
    tokens = tmp_path / "tokens.txt"
    tokens.write_text("\n".join(["<blank>", "<unk>", *CHARS, "<sos/eos>"]) + "\n")
    config = tmp_path / "train.yaml"
    config.write_text(yaml.safe_dump(TINY_CONFIG))
    exp = tmp_path / "exp"
    args = ["espnet2.bin.enh_s2t_gr_train", "--config", str(config), "--ngpu", "0",
            "--output_dir", str(exp), "--use_preprocessor", "true",
            "--token_type", "char", "--token_list", str(tokens),
            "--text_name", "text_spk1", "--num_workers", "0", "--fold_length", "80000",
            "--use_matplotlib", "false", "--use_tensorboard", "false"]
    for split in ("train", "valid"):
        args += [f"--{split}_shape_file", str(data / "speech_shape")]
        for fname, name, kind in (("wav.scp", "speech", "sound"),
                                  ("spk1.scp", "speech_ref1", "sound"),
                                  ("text_spk1", "text_spk1", "text")):
            args += [f"--{split}_data_path_and_name_and_type",
                     f"{data / fname},{name},{kind}"]
    _run(args, tmp_path / "train.log")
    saved = yaml.safe_load((exp / "config.yaml").read_text())
    assert saved["asr_weight"] == 0.7 and "asr_weight" not in saved["model_conf"]
    model_file = exp / "1epoch.pth"
    assert model_file.exists()

    decode = tmp_path / "decode"
    _run(["espnet2.bin.asr_inference", "--enh_s2t_task", "true", "--ngpu", "0",
          "--batch_size", "1", "--beam_size", "2",
          "--data_path_and_name_and_type", f"{data / 'wav.scp'},speech,sound",
          "--asr_train_config", str(exp / "config.yaml"),
          "--asr_model_file", str(model_file), "--output_dir", str(decode)],
         tmp_path / "decode.log")
    hyp_ids = [
        line.split(maxsplit=1)[0]
        for line in (decode / "1best_recog" / "text_spk1").read_text().splitlines()
    ]
    assert sorted(hyp_ids) == sorted(
        line.split()[0] for line in (data / "wav.scp").read_text().splitlines()
    )

    separate = SeparateSpeech(
        train_config=exp / "config.yaml", model_file=model_file, enh_s2t_task=True
    )
    wave, _ = soundfile.read(data / "wav" / "utt00_SIMU.wav", dtype="float32")
    (enhanced,) = separate(wave[None], fs=FS)
    assert enhanced.shape == (1, wave.shape[0])
