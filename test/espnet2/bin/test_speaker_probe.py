"""Speaker probe: finds speaker identity where it is planted, chance elsewhere; CLI.

The planted model's input frames carry a per-speaker offset vector in channels
0-3 plus noise everywhere. Layer 1 passes it on; layer 2 overwrites channels 0-3
with the noise of channels 4-7, so layers 2 and 3 cannot know the speaker. A correct probe
therefore scores high after layer 1 and at chance after layer 3.
"""

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
import yaml

from espnet2.bin.speaker_probe import (
    Utterance,
    main,
    markdown_table,
    probe_layers,
    read_data_dir,
    resolve_layers,
    split_by_speaker,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "asr"))
from speaker_testlib import build, build_enh_s2t, tiny_args, tiny_enh_s2t_args  # noqa: E402

DIM = 8
HALF = DIM // 2


class _Layer(torch.nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, x, mask):
        return self.fn(x), mask


class PlantedModel(torch.nn.Module):
    """``encode`` like ESPnet's: (1, L) samples -> (1, L / DIM, DIM) frames -> 3 layers."""

    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(1)
        mix = torch.randn(DIM, DIM, generator=g)
        self.encoder = torch.nn.Module()
        self.encoder.encoders = torch.nn.ModuleList(
            [
                _Layer(lambda x: x),  # keeps the speaker channel
                _Layer(lambda x: torch.cat([x[..., HALF:], x[..., HALF:]], dim=-1)),  # drops it
                _Layer(lambda x: torch.tanh(x @ mix)),  # sees only layer 2
            ]
        )

    def encode(self, speech, lengths):
        x = speech.view(1, -1, DIM)
        mask = torch.ones(1, 1, x.size(1), dtype=torch.bool)
        for layer in self.encoder.encoders:
            x, mask = layer(x, mask)
        return x, lengths


def planted_utterances(num_speakers=8, per_speaker=10, seed=0):
    rng = np.random.default_rng(seed)
    offsets = 2.0 * rng.standard_normal((num_speakers, HALF)).astype(np.float32)
    utts = []
    for s in range(num_speakers):
        for j in range(per_speaker):
            frames = rng.standard_normal((int(rng.integers(15, 30)), DIM)).astype(np.float32)
            frames[:, :HALF] += offsets[s]  # the speaker offset
            utts.append(Utterance(f"s{s}_u{j}", f"spk{s}", lambda f=frames: f.reshape(-1)))
    return utts


def test_probe_finds_speaker_only_where_it_is_planted():
    results = probe_layers(
        PlantedModel(), planted_utterances(), ["1", "3"],
        heldout_fraction=0.3, epochs=15, batch_size=8, lr=3e-3, channels=32,
    )
    by_layer = {r.layer: r for r in results}
    assert by_layer[1].chance == pytest.approx(1 / 8)  # 3 held-out utterances per speaker
    # layer 1 sees the offset: near-perfect on unseen utterances
    assert by_layer[1].heldout_accuracy >= 0.9
    # layer 3 cannot: 24 held-out guesses at chance 1/8 reach 9 correct with p < 0.3%
    assert by_layer[3].heldout_accuracy < 0.375


def test_split_keeps_every_speaker_on_both_sides():
    utts = planted_utterances(num_speakers=3, per_speaker=5)
    utts.append(Utterance("lonely", "spk_single", lambda: np.zeros(DIM, np.float32)))
    train, heldout, speakers = split_by_speaker(utts, 0.2, seed=0)
    assert speakers == ["spk0", "spk1", "spk2"]  # the one-utterance speaker is skipped
    assert {u.speaker for u in train} == {u.speaker for u in heldout} == set(speakers)
    assert not {u.utt_id for u in train} & {u.utt_id for u in heldout}
    assert len(heldout) == 3  # round(0.2 * 5) = 1 per speaker
    again = split_by_speaker(utts, 0.2, seed=0)
    assert [u.utt_id for u in again[1]] == [u.utt_id for u in heldout]  # reproducible


def test_layer_names_resolve_to_paper_presets():
    assert resolve_layers(["in", "mid", "out"], 17) == [(2, "IN"), (8, "MID"), (15, "OUT")]
    assert resolve_layers(["all"], 3) == [(1, "1"), (2, "2"), (3, "3")]


def test_data_dir_errors_name_the_file(tmp_path):
    (tmp_path / "wav.scp").write_text("u1 /x/u1.wav\nu2 sox a.wav -t wav - |\n")
    (tmp_path / "utt2spk").write_text("u1 A\nu2 B\n")
    with pytest.raises(ValueError, match="pipe command"):
        read_data_dir(tmp_path)
    (tmp_path / "wav.scp").write_text("u1 /x/u1.wav\nu2 /x/u2.wav\n")
    (tmp_path / "utt2spk").write_text("u1 A\nu2\n")
    with pytest.raises(ValueError, match=r"utt2spk:2: expected"):
        read_data_dir(tmp_path)


@pytest.mark.parametrize("joint", [False, True], ids=["asr", "enh_s2t"])
def test_cli_probes_a_stock_checkpoint_and_writes_table_and_plot(tmp_path, joint):
    # A tiny checkpoint with a speaker branch (ASR-only or joint SE + ASR), saved
    # as ESPnet does; the CLI loads it with stock ESPnet, probes 2 layers of the
    # ASR encoder and writes its outputs.
    branch = dict(num_speakers=3, mode="mt")
    args = tiny_enh_s2t_args(branch) if joint else tiny_args(branch)
    model = build_enh_s2t(branch) if joint else build(branch)
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(vars(args)))
    torch.save(model.state_dict(), tmp_path / "model.pth")
    data = tmp_path / "data"
    data.mkdir()
    rng = np.random.default_rng(0)
    wav_lines, spk_lines = [], []
    for s in range(3):
        for j in range(3):
            utt = f"spk{s}-u{j}"
            path = data / f"{utt}.wav"
            soundfile.write(path, (0.1 * rng.standard_normal(1600 + 160 * j)).astype(np.float32), 16000)
            wav_lines.append(f"{utt} {path}\n")
            spk_lines.append(f"{utt} spk{s}\n")
    (data / "wav.scp").write_text("".join(wav_lines))
    (data / "utt2spk").write_text("".join(spk_lines))
    earlier = tmp_path / "earlier.json"
    earlier.write_text(json.dumps({"tag": "baseline", "layers": [
        dict(layer=1, name="IN", train_accuracy=1.0, heldout_accuracy=0.5, chance=1 / 3,
             num_train=6, num_heldout=3, num_speakers=3)]}))
    out = tmp_path / "probe"
    main([
        "--train_config", str(tmp_path / "config.yaml"), "--model_file", str(tmp_path / "model.pth"),
        "--data_dir", str(data), "--output_dir", str(out), "--tag", "mt",
        "--layers", "in", "out", "--epochs", "2", "--channels", "8", "--compare", str(earlier),
        "--enh_s2t_task", str(joint).lower(),
    ])
    result = json.loads((out / "probe.json").read_text())
    assert result["tag"] == "mt"
    assert [(r["layer"], r["name"]) for r in result["layers"]] == [(1, "IN"), (4, "OUT")]
    assert all(0.0 <= r["heldout_accuracy"] <= 1.0 for r in result["layers"])
    table = (out / "probe.md").read_text()
    assert "| baseline | 50.0 | - | 33.3 |" in table and "| mt |" in table
    assert (out / "probe.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temp files left
    assert all(p.stat().st_mode & 0o777 == 0o644 for p in out.iterdir())  # group-readable, not mkstemp's 0600

    # Merge only (no model): the earlier result and this run's in one table, in
    # the given order; nothing is probed, so no probe.json is written.
    merged = tmp_path / "merged"
    main(["--compare", str(earlier), str(out / "probe.json"), "--output_dir", str(merged)])
    rows = [line for line in (merged / "probe.md").read_text().splitlines() if line.startswith("| ")]
    assert [line.split(" | ")[0] for line in rows[1:]] == ["| baseline", "| mt"]
    assert (merged / "probe.png").exists() and not (merged / "probe.json").exists()
    with pytest.raises(SystemExit):
        main(["--output_dir", str(merged)])  # neither a model nor files to merge
    with pytest.raises(SystemExit):
        main(["--train_config", str(tmp_path / "config.yaml"), "--output_dir", str(merged)])


def test_markdown_table_lists_models_by_layer():
    rows = [dict(layer=2, name="IN", heldout_accuracy=0.9, chance=0.25, num_speakers=4, num_train=8, num_heldout=4)]
    table = markdown_table({"al": rows})
    assert table.splitlines()[0] == "| model | IN (layer 2) | chance |"
    assert "| al | 90.0 | 25.0 |" in table
