"""End to end: enh_s2t_gr_speaker_train (Gradient Remedy + AL speaker branch), stock decoding.

Protects the joint recipe's path: utt2spkid labels through ESPnet's loader into
the two-task speaker model, the gradient-rule trainer consuming its
task_losses (the speaker term inside the ASR task) through all three stages,
the progress counter in the checkpoint, and stock joint inference loading it.
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
from speaker_testlib import TINY_ENH_S2T_CONF, TOKENS  # noqa: E402

FS = 16000


def write_joint_data(root: Path, num_speakers=2, per_speaker=2):
    root.mkdir(parents=True)
    rng = np.random.default_rng(0)
    t = np.arange(4000) / FS
    names = ("wav.scp", "spk1.scp", "text_spk1", "utt2spkid", "speech_shape")
    lines = {name: [] for name in names}
    for s in range(num_speakers):
        for j in range(per_speaker):
            utt = f"spk{s}-utt{j}_SIMU"
            clean = 0.3 * np.sin(2 * np.pi * (150 + 100 * s) * t)
            noisy = clean + 0.1 * rng.standard_normal(t.size)
            soundfile.write(root / f"{utt}.wav", noisy.astype(np.float32), FS)
            soundfile.write(root / f"{utt}_clean.wav", clean.astype(np.float32), FS)
            lines["wav.scp"].append(f"{utt} {root / f'{utt}.wav'}")
            lines["spk1.scp"].append(f"{utt} {root / f'{utt}_clean.wav'}")
            lines["text_spk1"].append(f"{utt} {''.join(rng.choice(list('abcdefgh'), size=3))}")
            lines["utt2spkid"].append(f"{utt} {s}")
            lines["speech_shape"].append(f"{utt} {t.size}")
    for name, content in lines.items():
        (root / name).write_text("\n".join(content) + "\n")


@pytest.mark.slow
def test_gradient_remedy_training_with_al_branch_then_stock_joint_decoding(tmp_path):
    data = tmp_path / "data"
    write_joint_data(data)
    (tmp_path / "tokens.txt").write_text("\n".join(TOKENS) + "\n")
    conf = {k: v for k, v in TINY_ENH_S2T_CONF.items() if k not in ("token_list", "token_type", "bpemodel", "init")}
    conf["speaker_branch_conf"] = dict(
        num_speakers=2, fork="mid", mode="al", total_steps="auto", branch_only_from=0.25, joint_from=0.5,
    )
    conf.update(optim="adam", optim_conf=dict(lr=1e-3), grad_rule="gr", asr_weight=0.7)
    (tmp_path / "train.yaml").write_text(yaml.safe_dump(conf))
    exp = tmp_path / "exp"
    cmd = [
        sys.executable, "-m", "espnet2.bin.enh_s2t_gr_speaker_train",
        "--config", str(tmp_path / "train.yaml"), "--output_dir", str(exp),
        "--ngpu", "0", "--num_workers", "0", "--seed", "0",
        "--token_type", "char", "--token_list", str(tmp_path / "tokens.txt"),
        "--text_name", "text_spk1", "--use_preprocessor", "true",
        "--batch_type", "unsorted", "--batch_size", "2",
        "--max_epoch", "2",
        "--train_shape_file", f"{data}/speech_shape", "--valid_shape_file", f"{data}/speech_shape",
    ]
    inputs = [
        f"{data}/wav.scp,speech,sound", f"{data}/spk1.scp,speech_ref1,sound",
        f"{data}/text_spk1,text_spk1,text", f"{data}/utt2spkid,spk_labels,text_int",
    ]
    for spec in inputs:
        cmd += ["--train_data_path_and_name_and_type", spec]
    for spec in inputs[:3]:
        cmd += ["--valid_data_path_and_name_and_type", spec]
    run = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]

    # total_steps auto, no --num_iters_per_epoch: the task counts the batches of one
    # epoch (4 utterances, unsorted batches of 2 -> 2) and config.yaml records
    # 2 epochs x 2 = 4, which is also the number of training forwards the counter saw.
    recorded = yaml.safe_load((exp / "config.yaml").read_text())["speaker_branch_conf"]
    assert recorded["total_steps"] == 4
    state = torch.load(exp / "2epoch.pth", map_location="cpu")
    assert int(state["speaker_adversary.step"]) == 4
    assert "lambda_spk=" in run.stderr and "gr_" in run.stderr  # both reported

    from espnet2.bin.asr_inference import Speech2Text

    s2t = Speech2Text(
        asr_train_config=str(exp / "config.yaml"), asr_model_file=str(exp / "2epoch.pth"),
        enh_s2t_task=True, device="cpu", beam_size=2, ctc_weight=0.3, nbest=1,
    )
    wav = soundfile.read(str(data / "spk0-utt0_SIMU.wav"), dtype="float32")[0]
    assert isinstance(s2t(wav)[0][0][0], str)


def test_collect_stats_builds_the_model_without_the_branch():
    """Stage 10 of a recipe collects statistics with the branch config before any
    speaker label exists (no num_speakers): the statistics never run the branch,
    so none is built and the config's other keys are not checked yet."""
    import argparse

    from espnet2.tasks.enh_s2t_gr_speaker import EnhS2TGRSpeakerTask

    args = argparse.Namespace(collect_stats=True, speaker_branch_conf={"mode": "al"})
    assert EnhS2TGRSpeakerTask.build_speaker_adversary(torch.nn.Identity(), args) is None
    args.collect_stats = False
    with pytest.raises(ValueError, match="num_speakers"):
        EnhS2TGRSpeakerTask.build_speaker_adversary(torch.nn.Identity(), args)
