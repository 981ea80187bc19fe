"""End-to-end tests of GradientRemedyTrainer through ESPnet's CLI (CPU, gloo DDP).

A tiny joint model (STFT + TCN front-end, 1-block Conformer without the
convolution module, so no BatchNorm; dropout 0, no SpecAugment) is trained on
eight generated 0.5 s utterances of equal length with equal-length transcripts
(Kaldi-style wav.scp / spk1.scp / text_spk1). Its per-utterance computation then
does not depend on how utterances are grouped into batches, so the same
effective batch split three ways must give the same parameters.

Every training run takes one optimizer step per epoch (8 utterances per step), so
ESPnet's per-epoch shuffling of batches only reorders the micro-batches inside a
step, which the sum over micro-batches does not see.
"""

import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Dict, List

import numpy as np
import pytest
import soundfile
import torch
import yaml

from espnet2.train.reporter import Reporter

pytestmark = pytest.mark.slow

FS = 16000
N_SAMPLES = 8000  # 0.5 s
LETTERS = "ABCDEFGHIJ"
CONFIG = {
    "enh_encoder": "stft",
    "enh_encoder_conf": {"n_fft": 256, "hop_length": 64},
    "enh_decoder": "stft",
    "enh_decoder_conf": {"n_fft": 256, "hop_length": 64},
    "enh_separator": "tcn",
    "enh_separator_conf": {
        "num_spk": 1, "layer": 2, "stack": 1, "bottleneck_dim": 16, "hidden_dim": 32,
        "kernel": 3, "causal": False, "norm_type": "gLN", "nonlinear": "relu",
    },
    "enh_criterions": [
        {
            "name": "si_snr",
            "conf": {},
            "wrapper": "fixed_order",
            "wrapper_conf": {"weight": 0.3},
        }
    ],
    "frontend": "default",
    "frontend_conf": {
        "fs": FS, "n_fft": 512, "win_length": 400, "hop_length": 160, "n_mels": 40
    },
    "specaug": None,
    "normalize": "utterance_mvn",
    "asr_encoder": "conformer",
    "asr_encoder_conf": {
        "output_size": 32, "attention_heads": 2, "linear_units": 64, "num_blocks": 1,
        "dropout_rate": 0.0, "positional_dropout_rate": 0.0,
        "attention_dropout_rate": 0.0,
        "input_layer": "conv2d", "normalize_before": True, "macaron_style": False,
        "rel_pos_type": "latest", "pos_enc_layer_type": "rel_pos",
        "selfattention_layer_type": "rel_selfattn", "activation_type": "swish",
        "use_cnn_module": False,
    },
    "asr_decoder": "transformer",
    "asr_decoder_conf": {
        "attention_heads": 2, "linear_units": 64, "num_blocks": 1, "dropout_rate": 0.0,
        "positional_dropout_rate": 0.0, "self_attention_dropout_rate": 0.0,
        "src_attention_dropout_rate": 0.0,
    },
    "ctc_conf": {
        "dropout_rate": 0.0, "ctc_type": "builtin", "reduce": True,
        "zero_infinity": True,
    },
    "asr_model_conf": {
        "ctc_weight": 0.3, "lsm_weight": 0.1, "length_normalized_loss": False,
        "extract_feats_in_collect_stats": False,
    },
    "model_conf": {"calc_enh_loss": True, "bypass_enh_prob": 0.0},
    "optim": "sgd",
    "optim_conf": {"lr": 0.05},
    "batch_type": "unsorted",
    "num_att_plot": 0,
    "best_model_criterion": [["valid", "loss", "min"]],
    "keep_nbest_models": 1,
    "num_workers": 0,
    "seed": 0,
}

# Harness for the 2-process run: before each validation, every rank saves its own
# parameters, so the test can compare ranks (ESPnet saves checkpoints on rank 0 only).
RANK_DUMP = textwrap.dedent(
    """
    import sys, torch, torch.distributed as dist
    from espnet2.train.trainer_gradient_remedy import GradientRemedyTrainer
    from espnet2.bin.enh_s2t_gr_train import main
    validate = GradientRemedyTrainer.validate_one_epoch.__func__

    def dump_then_validate(cls, model, iterator, reporter, options, distributed_option):
        rank = dist.get_rank() if dist.is_initialized() else 0
        core = getattr(model, "module", model)
        state = {k: v.detach().clone() for k, v in core.state_dict().items()}
        epoch = reporter.get_epoch()
        torch.save(state, f"{options.output_dir}/rank{rank}_epoch{epoch}.pth")
        return validate(cls, model, iterator, reporter, options, distributed_option)

    GradientRemedyTrainer.validate_one_epoch = classmethod(dump_then_validate)
    main(sys.argv[1:])
    """
)


def write_data(root: Path, categories: List[str]) -> Path:
    """Kaldi-style data dir: wav.scp (noisy), spk1.scp (clean), text_spk1, speech_shape.

    Utterance ``i`` is ``utt{i:02d}_{categories[i]}``; REAL ones get the noisy wav as
    a dummy reference, as ESPnet's CHiME-4 preparation does.
    """
    rng = np.random.default_rng(0)
    data = root / "data"
    (data / "wav").mkdir(parents=True)
    t = np.arange(N_SAMPLES) / FS
    files = ("wav.scp", "spk1.scp", "text_spk1", "speech_shape")
    lines: Dict[str, List[str]] = {k: [] for k in files}
    for i, category in enumerate(categories):
        utt = f"utt{i:02d}_{category}"
        clean = 0.3 * np.sin(2 * np.pi * (200 + 40 * i) * t) * np.hanning(N_SAMPLES)
        noisy = clean + 0.1 * rng.standard_normal(N_SAMPLES)
        noisy_path = data / "wav" / f"{utt}.wav"
        clean_path = data / "wav" / f"{utt}_clean.wav"
        soundfile.write(noisy_path, noisy.astype(np.float32), FS)
        soundfile.write(clean_path, clean.astype(np.float32), FS)
        words = ["".join(rng.choice(list(LETTERS), 3)) for _ in range(2)]
        lines["wav.scp"].append(f"{utt} {noisy_path}")
        ref_path = noisy_path if category == "REAL" else clean_path
        lines["spk1.scp"].append(f"{utt} {ref_path}")
        lines["text_spk1"].append(f"{utt} {' '.join(words)}")
        lines["speech_shape"].append(f"{utt} {N_SAMPLES}")
    for name, content in lines.items():
        (data / name).write_text("\n".join(content) + "\n")
    tokens = ["<blank>", "<unk>", "<space>", *LETTERS, "<sos/eos>"]
    (root / "tokens.txt").write_text("\n".join(tokens) + "\n")
    (root / "conf.yaml").write_text(yaml.safe_dump(CONFIG))
    return root


def train_args(
    root: Path, out: str, batch_size: int, accum_grad: int, epochs: int
) -> List[str]:
    data = root / "data"
    args = [
        "--config", str(root / "conf.yaml"), "--ngpu", "0",
        "--output_dir", str(root / out),
        "--use_preprocessor", "true", "--token_type", "char",
        "--token_list", str(root / "tokens.txt"), "--text_name", "text_spk1",
        "--batch_size", str(batch_size), "--accum_grad", str(accum_grad),
        "--max_epoch", str(epochs),
    ]
    for split in ("train", "valid"):
        for fname, name, kind in (
            ("wav.scp", "speech", "sound"), ("spk1.scp", "speech_ref1", "sound"),
            ("text_spk1", "text_spk1", "text"),
        ):
            option = f"--{split}_data_path_and_name_and_type"
            args += [option, f"{data / fname},{name},{kind}"]
        args += [f"--{split}_shape_file", str(data / "speech_shape")]
    return args


def launch(
    root: Path, out: str, module_args: List[str], extra: List[str]
) -> subprocess.Popen:
    (root / "logs").mkdir(exist_ok=True)
    log = open(root / "logs" / f"{out}.log", "w")
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    return subprocess.Popen(
        [sys.executable, *module_args, *extra],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        cwd=root,
    )


def wait_all(root: Path, procs: Dict[str, subprocess.Popen], timeout: float) -> None:
    for name, proc in procs.items():
        try:
            rc = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            for p in procs.values():
                p.kill()
            pytest.fail(f"{name} did not finish within {timeout} s (deadlock?)")
        log = (root / "logs" / f"{name}.log").read_text()
        assert rc == 0, f"{name} failed (rc {rc}):\n{log[-3000:]}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def params(path: Path) -> torch.Tensor:
    state = torch.load(path, map_location="cpu")
    floats = [v.reshape(-1).double() for v in state.values() if v.is_floating_point()]
    return torch.cat(floats)


def rel_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


def epoch_stats(out_dir: Path) -> Reporter:
    reporter = Reporter()
    checkpoint = torch.load(out_dir / "checkpoint.pth", weights_only=False)
    reporter.load_state_dict(checkpoint["reporter"])
    return reporter


@pytest.fixture(scope="module")
def simu_runs(tmp_path_factory):
    """Stock enh_s2t_train vs enh_s2t_gr_train --grad_rule sum on SIMU-only data."""
    root = write_data(tmp_path_factory.mktemp("simu"), ["SIMU"] * 8)
    common = dict(batch_size=2, accum_grad=1, epochs=2)
    procs = {
        "stock": launch(
            root, "stock", ["-m", "espnet2.bin.enh_s2t_train"],
            train_args(root, "stock", **common),
        ),
        "sum": launch(
            root, "sum", ["-m", "espnet2.bin.enh_s2t_gr_train"],
            train_args(root, "sum", **common) + ["--grad_rule", "sum"],
        ),
    }
    wait_all(root, procs, timeout=600)
    return root


# Categories alternate so that with global batches of 4 split [rank::2], rank 0
# sees only REAL utterances (no SE loss, loss_enh NaN) and rank 1 only SIMU ones.
MIXED = ["REAL", "SIMU"] * 4


@pytest.fixture(scope="module")
def gr_runs(tmp_path_factory):
    """grad_rule gr (per tensor), 3 epochs of one step each, the effective batch of 8
    split three ways: (1 process, batch 2, accum 4), (2 gloo ranks, global batch 4,
    accum 2), (1 process, batch 8, accum 1)."""
    root = write_data(tmp_path_factory.mktemp("mixed"), MIXED)
    (root / "rank_dump.py").write_text(RANK_DUMP)
    gr = ["--grad_rule", "gr", "--gr_granularity", "tensor"]
    module = ["-m", "espnet2.bin.enh_s2t_gr_train"]
    procs = {
        name: launch(root, name, module, train_args(root, name, bs, accum, 3) + gr)
        for name, bs, accum in (("accum4", 2, 4), ("batch8", 8, 1))
    }
    port = free_port()
    for rank in range(2):
        dist = [
            "--dist_backend", "gloo", "--multiprocessing_distributed", "false",
            "--dist_world_size", "2", "--dist_rank", str(rank),
            "--dist_master_addr", "127.0.0.1", "--dist_master_port", str(port),
        ]
        procs[f"ddp{rank}"] = launch(
            root, f"ddp{rank}", [str(root / "rank_dump.py")],
            train_args(root, "ddp", 4, 2, 3) + gr + dist,
        )
    wait_all(root, procs, timeout=600)
    return root


def test_sum_rule_reproduces_stock_enh_s2t_train_losses(simu_runs):
    """Same seed, data and config: the per-epoch train and valid losses of
    enh_s2t_gr_train --grad_rule sum equal stock ESPnet's to 1e-5 relative (the
    sum of two per-task gradients differs from one backward of the summed loss
    only by float rounding, which grows a little over the steps)."""
    stock, ours = epoch_stats(simu_runs / "stock"), epoch_stats(simu_runs / "sum")
    for epoch in (1, 2):
        for phase, key in (
            ("train", "loss"), ("train", "loss_asr"), ("train", "loss_enh"),
            ("valid", "loss"),
        ):
            a, b = ours.get_value(phase, key, epoch), stock.get_value(phase, key, epoch)
            assert abs(a - b) <= 1e-5 * abs(b), (epoch, phase, key, a, b)
    ours_params = params(simu_runs / "sum" / "2epoch.pth")
    assert rel_diff(ours_params, params(simu_runs / "stock" / "2epoch.pth")) < 1e-5


def test_gr_options_are_saved_in_config_yaml(simu_runs):
    """The rule options are part of the experiment's record (config.yaml)."""
    config = yaml.safe_load((simu_runs / "sum" / "config.yaml").read_text())
    assert config["grad_rule"] == "sum"
    assert config["gr_K"] == 5.0
    assert config["gr_granularity"] == "tensor"
    assert config["gr_apply"] == "step"
    assert config["gr_shared_params"] is None


def test_gr_update_is_invariant_to_accumulation_and_ranks(gr_runs):
    """After 3 optimizer steps, (1 process, accum 4) == (2 ranks, accum 2) ==
    (1 process, one batch of 8): GR acts on the per-task gradients of the whole
    effective batch (accumulated, then all-reduced). Tolerance 1e-5 relative:
    float32 summation order differs between the three."""
    accum4 = params(gr_runs / "accum4" / "3epoch.pth")
    batch8 = params(gr_runs / "batch8" / "3epoch.pth")
    ddp = params(gr_runs / "ddp" / "3epoch.pth")
    start = params(gr_runs / "ddp" / "rank0_epoch1.pth")
    assert rel_diff(accum4, start) > 1e-4, "training did not move the parameters"
    assert rel_diff(accum4, batch8) < 1e-5
    assert rel_diff(ddp, batch8) < 1e-5


def test_ranks_with_real_only_and_simu_only_batches_stay_in_sync(gr_runs):
    """Rank 0 sees only REAL utterances and rank 1 only SIMU ones: the run finished
    (no deadlock in the stats collectives, fixture timeout) and after every epoch
    both ranks hold bit-identical parameters."""
    for epoch in (1, 2, 3):
        r0 = torch.load(gr_runs / "ddp" / f"rank0_epoch{epoch}.pth")
        r1 = torch.load(gr_runs / "ddp" / f"rank1_epoch{epoch}.pth")
        assert r0.keys() == r1.keys()
        for key in r0:
            torch.testing.assert_close(r0[key], r1[key], rtol=0, atol=0, msg=key)
    reporter = epoch_stats(gr_runs / "ddp")
    assert np.isfinite(reporter.get_value("train", "gr_cos", 3))


def test_gr_checkpoint_decodes_with_stock_asr_inference(gr_runs, tmp_path):
    """A checkpoint trained with grad_rule gr decodes with ESPnet's stock
    asr_inference (--enh_s2t_task true), which writes 1best_recog/text_spk1."""
    exp = gr_runs / "accum4"
    out = tmp_path / "decode"
    cmd = [
        sys.executable, "-m", "espnet2.bin.asr_inference", "--enh_s2t_task", "true",
        "--ngpu", "0", "--batch_size", "1", "--beam_size", "2", "--ctc_weight", "0.3",
        "--data_path_and_name_and_type", f"{gr_runs / 'data' / 'wav.scp'},speech,sound",
        "--asr_train_config", str(exp / "config.yaml"),
        "--asr_model_file", str(exp / "3epoch.pth"), "--output_dir", str(out),
    ]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = (out / "1best_recog" / "text_spk1").read_text().splitlines()
    expected = [f"utt{i:02d}_{c}" for i, c in enumerate(MIXED)]
    assert sorted(line.split()[0] for line in lines) == expected
