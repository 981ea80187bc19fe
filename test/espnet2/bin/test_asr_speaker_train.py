"""End to end: asr_speaker_train on a tiny data dir, then stock ESPnet decoding.

Protects the plumbing a recipe relies on: the utt2spkid file read by ESPnet's
``text_int`` loader as ``spk_labels``, ``speaker_branch_conf`` in config.yaml,
the progress counter in the checkpoint (= training batches, so resume continues
the schedule), and ESPnet's stock Speech2Text loading the result.
"""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "asr"))
from speaker_testlib import TINY_ASR_CONF, TOKENS  # noqa: E402


def write_data_dir(root: Path, num_speakers=3, per_speaker=2):
    root.mkdir(parents=True)
    rng = np.random.default_rng(0)
    lines = {name: [] for name in ("wav.scp", "text", "utt2spk", "utt2spkid", "speech_shape", "text_shape")}
    for s in range(num_speakers):
        for j in range(per_speaker):
            utt = f"spk{s}-utt{j}"
            n = 3200 + 400 * j
            path = root / f"{utt}.wav"
            soundfile.write(path, (0.1 * rng.standard_normal(n)).astype(np.float32), 16000)
            words = "".join(rng.choice(list("abcdefgh"), size=4))
            lines["wav.scp"].append(f"{utt} {path}")
            lines["text"].append(f"{utt} {words}")
            lines["utt2spk"].append(f"{utt} spk{s}")
            lines["utt2spkid"].append(f"{utt} {s}")  # what the recipe writes
            lines["speech_shape"].append(f"{utt} {n}")
            lines["text_shape"].append(f"{utt} 4")
    for name, content in lines.items():
        (root / name).write_text("\n".join(content) + "\n")


@pytest.mark.slow
def test_training_cli_with_al_branch_then_stock_decoding(tmp_path):
    data = tmp_path / "data"
    write_data_dir(data)
    (tmp_path / "tokens.txt").write_text("\n".join(TOKENS) + "\n")
    conf = {k: v for k, v in TINY_ASR_CONF.items() if k not in ("token_list", "token_type", "bpemodel", "init", "input_size")}
    conf["speaker_branch_conf"] = dict(
        num_speakers=3, fork="mid", mode="al", total_steps="auto", joint_from=0.5, branch_only_from=0.25,
    )
    conf["optim"] = "adam"
    conf["optim_conf"] = dict(lr=1e-3)
    (tmp_path / "train.yaml").write_text(yaml.safe_dump(conf))
    exp = tmp_path / "exp"
    inputs = [
        f"{data}/wav.scp,speech,sound", f"{data}/text,text,text", f"{data}/utt2spkid,spk_labels,text_int",
    ]
    cmd = [
        sys.executable, "-m", "espnet2.bin.asr_speaker_train",
        "--config", str(tmp_path / "train.yaml"), "--output_dir", str(exp),
        "--ngpu", "0", "--num_workers", "0", "--seed", "0",
        "--token_type", "char", "--token_list", str(tmp_path / "tokens.txt"),
        "--use_preprocessor", "true", "--batch_type", "unsorted", "--batch_size", "2",
        "--max_epoch", "2", "--num_iters_per_epoch", "3",
        "--train_shape_file", f"{data}/speech_shape", "--train_shape_file", f"{data}/text_shape",
        "--valid_shape_file", f"{data}/speech_shape", "--valid_shape_file", f"{data}/text_shape",
    ]
    for spec in inputs:
        cmd += ["--train_data_path_and_name_and_type", spec]
    for spec in inputs[:2]:  # validation without speaker labels: no speaker loss
        cmd += ["--valid_data_path_and_name_and_type", spec]
    run = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]

    config = yaml.safe_load((exp / "config.yaml").read_text())
    assert config["model"] == "espnet"
    # total_steps auto with --num_iters_per_epoch 3: 2 epochs x 3 batches, recorded in
    # config.yaml and equal to the counter the schedule reads
    assert config["speaker_branch_conf"]["total_steps"] == 6
    state = torch.load(exp / "2epoch.pth", map_location="cpu")
    assert int(state["speaker_adversary.step"]) == 6
    # the epoch summary (ESPnet logs to stderr) reports the branch's stats
    assert "lambda_spk=" in run.stderr and "acc_spk=" in run.stderr

    from espnet2.bin.asr_inference import Speech2Text

    s2t = Speech2Text(
        asr_train_config=str(exp / "config.yaml"), asr_model_file=str(exp / "2epoch.pth"),
        device="cpu", beam_size=2, ctc_weight=0.3, nbest=1,
    )
    text = s2t(soundfile.read(str(data / "spk0-utt0.wav"), dtype="float32")[0])[0][0]
    assert isinstance(text, str)
