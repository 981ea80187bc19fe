#!/usr/bin/env python3
"""Probe how much speaker identity each encoder layer of a trained model encodes.

Adi et al. 2019, section 4.2 (Figure 2): freeze a trained ASR model, take the
representation after chosen encoder layers, train a speaker classifier with the
speaker branch's architecture (gated conv + linear + LogSumExp pooling) on it,
and report its accuracy on held-out utterances of the same speakers. High
accuracy means the layer encodes the speaker; chance level means it does not
(in a form this classifier can use).

Usage::

    python -m espnet2.bin.speaker_probe \\
        --train_config exp/asr_train/config.yaml \\
        --model_file exp/asr_train/valid.acc.ave.pth \\
        --data_dir dump/raw/tr05_multi_noisy \\
        --layers in mid out --epochs 10 --output_dir exp/probe/baseline --tag baseline

``--data_dir`` is a Kaldi-style directory with ``wav.scp`` (plain audio file
paths, as ESPnet's formatted ``dump/raw`` directories have) and ``utt2spk``.
Per speaker, ``--heldout_fraction`` of the utterances (at least one) are held
out; speakers with a single utterance are skipped. Add ``--enh_s2t_task true``
for a joint SE + ASR checkpoint (the probe then reads the ASR encoder behind the
enhancement front-end).

Outputs (written atomically) in ``--output_dir``: ``probe.json`` (per layer:
train / held-out accuracy, chance level = majority speaker share of the held-out
set), ``probe.md`` (a markdown table) and ``probe.png`` (held-out accuracy per
layer, the paper's Figure 2). ``--compare other/probe.json ...`` adds earlier
results (e.g. the MT and AL models) to the table and the plot; given without
``--train_config`` / ``--model_file``, it only merges those results into one
``probe.md`` / ``probe.png`` (nothing is probed).
"""

import argparse
import json
import logging
import random
import sys
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from espnet2.asr.speaker_adversarial import encoder_layers, tap_encoder_layers
from espnet2.fileio.atomic_write import atomic_path, atomic_writer
from espnet2.layers.speaker_branch import SpeakerBranch, resolve_fork_layer, speaker_nll
from espnet2.utils.types import str2bool


@dataclass
class Utterance:
    """One probe example: an id, its speaker and its waveform loader."""

    utt_id: str
    speaker: str
    load: Callable[[], np.ndarray]


@dataclass
class LayerResult:
    """Probe accuracies for one encoder layer (fractions in [0, 1])."""

    layer: int
    name: str
    train_accuracy: float
    heldout_accuracy: float
    chance: float
    num_train: int
    num_heldout: int
    num_speakers: int


def _read_kaldi_map(path: Path) -> Dict[str, str]:
    """``key value`` lines -> dict; errors name the file and line."""
    out: Dict[str, str] = {}
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            parts = line.rstrip("\n").split(maxsplit=1)
            if len(parts) != 2:
                raise ValueError(f"{path}:{lineno}: expected '<utt-id> <value>', got {line!r}")
            if parts[0] in out:
                raise ValueError(f"{path}:{lineno}: duplicate key {parts[0]!r}")
            out[parts[0]] = parts[1].strip()
    return out


def read_data_dir(data_dir: Path) -> List[Utterance]:
    """Utterances of a Kaldi-style dir (``wav.scp`` + ``utt2spk``), sorted by id."""
    from espnet2.fileio.sound_scp import SoundScpReader

    wav_scp, utt2spk_path = data_dir / "wav.scp", data_dir / "utt2spk"
    for path in (wav_scp, utt2spk_path):
        if not path.is_file():
            raise FileNotFoundError(f"speaker probe needs {path}")
    utt2spk = _read_kaldi_map(utt2spk_path)
    wavs = _read_kaldi_map(wav_scp)
    for utt, spec in wavs.items():
        if spec.endswith("|"):
            raise ValueError(
                f"{wav_scp}: {utt} is a pipe command ({spec!r}); use a formatted "
                "data dir (e.g. dump/raw/<set>) whose wav.scp lists audio files"
            )
    missing = sorted(set(wavs) - set(utt2spk))
    if missing:
        raise ValueError(f"{utt2spk_path}: no speaker for {len(missing)} utterances, e.g. {missing[:3]}")
    reader = SoundScpReader(str(wav_scp), dtype="float32")

    def loader(utt: str) -> Callable[[], np.ndarray]:
        return lambda: reader[utt][1]

    return [Utterance(u, utt2spk[u], loader(u)) for u in sorted(wavs)]


def split_by_speaker(
    utterances: Sequence[Utterance],
    heldout_fraction: float,
    seed: int,
    max_utts_per_speaker: int = 0,
) -> Tuple[List[Utterance], List[Utterance], List[str]]:
    """Split each speaker's utterances into train and held-out parts.

    Every kept speaker has at least one utterance on each side, so held-out
    accuracy measures recognising *known* speakers from new utterances.

    Returns:
        ``(train, heldout, speakers)``; ``speakers`` sorted, their index is the label.
    """
    if not 0.0 < heldout_fraction < 1.0:
        raise ValueError(f"heldout_fraction must be in (0, 1), got {heldout_fraction}")
    by_speaker: Dict[str, List[Utterance]] = defaultdict(list)
    for utt in utterances:
        by_speaker[utt.speaker].append(utt)
    rng = random.Random(seed)
    train, heldout, speakers = [], [], []
    skipped = []
    for speaker in sorted(by_speaker):
        utts = sorted(by_speaker[speaker], key=lambda u: u.utt_id)
        rng.shuffle(utts)
        if max_utts_per_speaker > 0:
            utts = utts[:max_utts_per_speaker]
        if len(utts) < 2:
            skipped.append(speaker)
            continue
        n_heldout = min(len(utts) - 1, max(1, round(heldout_fraction * len(utts))))
        speakers.append(speaker)
        heldout += utts[:n_heldout]
        train += utts[n_heldout:]
    if skipped:
        logging.warning(f"speaker probe: skipped {len(skipped)} speakers with one utterance")
    if len(speakers) < 2:
        raise ValueError(
            f"speaker probe needs >= 2 speakers with >= 2 utterances, found {len(speakers)}"
        )
    return train, heldout, speakers


def asr_encoder(model: torch.nn.Module) -> torch.nn.Module:
    """The ASR encoder of an ASR model or of a joint SE + ASR model."""
    s2t = getattr(model, "s2t_model", None)
    return (s2t if s2t is not None else model).encoder


@torch.no_grad()
def extract_layer_features(
    model: torch.nn.Module,
    utterances: Sequence[Utterance],
    layers: Sequence[int],
    device: str = "cpu",
) -> Dict[int, List[torch.Tensor]]:
    """Frozen representations after each layer: ``{layer: [ (T_i, D) per utt ]}``.

    Runs ``model.encode`` (ESPnet's inference path: front-end, normalisation,
    encoder; for a joint model also the enhancement) one utterance at a time.
    """
    model.eval()
    feats: Dict[int, List[torch.Tensor]] = {k: [] for k in layers}
    encoder = asr_encoder(model)
    for i, utt in enumerate(utterances):
        speech = torch.as_tensor(utt.load(), dtype=torch.float32, device=device)[None]
        lengths = torch.tensor([speech.size(1)], device=device)
        with tap_encoder_layers(encoder, list(layers)) as taps:
            model.encode(speech, lengths)
        for k in layers:
            x, n = taps[k].single()
            feats[k].append(x[0, : int(n[0])].float().cpu())
        if (i + 1) % 500 == 0:
            logging.info(f"speaker probe: encoded {i + 1}/{len(utterances)} utterances")
    return feats


def _batches(n: int, batch_size: int, rng: Optional[torch.Generator]) -> List[torch.Tensor]:
    order = torch.randperm(n, generator=rng) if rng is not None else torch.arange(n)
    return list(order.split(batch_size))


def _pad(feats: Sequence[torch.Tensor], idx: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    chosen = [feats[int(i)] for i in idx]
    lengths = torch.tensor([f.size(0) for f in chosen])
    return torch.nn.utils.rnn.pad_sequence(chosen, batch_first=True), lengths


def _accuracy(branch: SpeakerBranch, feats, labels: torch.Tensor, batch_size: int, device) -> float:
    branch.eval()
    correct = 0
    with torch.no_grad():
        for idx in _batches(len(feats), batch_size, None):
            x, lengths = _pad(feats, idx)
            scores = branch(x.to(device), lengths.to(device))
            correct += int((scores.argmax(dim=1).cpu() == labels[idx]).sum())
    branch.train()
    return correct / max(1, len(feats))


def train_probe(
    train_feats: Sequence[torch.Tensor],
    train_labels: torch.Tensor,
    heldout_feats: Sequence[torch.Tensor],
    heldout_labels: torch.Tensor,
    num_speakers: int,
    epochs: int = 10,
    batch_size: int = 16,
    lr: float = 1e-3,
    seed: int = 0,
    device: str = "cpu",
    **branch_conf,
) -> Tuple[float, float]:
    """Train a :class:`SpeakerBranch` on frozen features; return (train, held-out) accuracy.

    Args:
        train_feats, heldout_feats: lists of (T_i, D) tensors.
        train_labels, heldout_labels: (N,) speaker indices.
        branch_conf: ``channels``, ``kernel_size``, ``tau`` of the branch.
    """
    torch.manual_seed(seed)
    rng = torch.Generator().manual_seed(seed)
    branch = SpeakerBranch(train_feats[0].size(1), num_speakers, **branch_conf).to(device)
    opt = torch.optim.Adam(branch.parameters(), lr=lr)
    for _ in range(epochs):
        for idx in _batches(len(train_feats), batch_size, rng):
            x, lengths = _pad(train_feats, idx)
            loss, _, _ = speaker_nll(branch(x.to(device), lengths.to(device)), train_labels[idx].to(device))
            opt.zero_grad()
            loss.backward()
            opt.step()
    return (
        _accuracy(branch, train_feats, train_labels, batch_size, device),
        _accuracy(branch, heldout_feats, heldout_labels, batch_size, device),
    )


def resolve_layers(specs: Sequence[str], num_layers: int) -> List[Tuple[int, str]]:
    """``in``/``mid``/``out``/numbers/``all`` -> sorted unique ``(layer, name)``."""
    chosen: Dict[int, str] = {}
    for spec in specs:
        if spec == "all":
            for k in range(1, num_layers + 1):
                chosen.setdefault(k, str(k))
        else:
            k = resolve_fork_layer(spec, num_layers)
            chosen[k] = spec.upper() if not spec.isdigit() else chosen.get(k, spec)
    return sorted(chosen.items())


def probe_layers(
    model: torch.nn.Module,
    utterances: Sequence[Utterance],
    layer_specs: Sequence[str],
    heldout_fraction: float = 0.2,
    max_utts_per_speaker: int = 0,
    seed: int = 0,
    device: str = "cpu",
    **train_conf,
) -> List[LayerResult]:
    """The whole probe: split, extract, train one classifier per layer, evaluate."""
    train, heldout, speakers = split_by_speaker(
        utterances, heldout_fraction, seed, max_utts_per_speaker
    )
    index = {s: i for i, s in enumerate(speakers)}
    y_train = torch.tensor([index[u.speaker] for u in train])
    y_heldout = torch.tensor([index[u.speaker] for u in heldout])
    chance = float(torch.bincount(y_heldout).max()) / len(y_heldout)
    layers = resolve_layers(layer_specs, len(encoder_layers(asr_encoder(model))))
    ks = [k for k, _ in layers]
    f_train = extract_layer_features(model, train, ks, device)
    f_heldout = extract_layer_features(model, heldout, ks, device)
    results = []
    for k, name in layers:
        acc_train, acc_heldout = train_probe(
            f_train[k], y_train, f_heldout[k], y_heldout, len(speakers),
            seed=seed, device=device, **train_conf,
        )
        logging.info(f"speaker probe: layer {k} ({name}) held-out accuracy {acc_heldout:.3f}")
        results.append(
            LayerResult(k, name, acc_train, acc_heldout, chance, len(train), len(heldout), len(speakers))
        )
    return results


def markdown_table(runs: Dict[str, List[dict]]) -> str:
    """Held-out accuracy (%) per model (rows) and layer (columns), plus chance."""
    columns = sorted({(r["layer"], r["name"]) for rows in runs.values() for r in rows})
    head = "| model | " + " | ".join(f"{n} (layer {k})" if n != str(k) else f"layer {k}" for k, n in columns)
    lines = [head + " | chance |", "|---" * (len(columns) + 2) + "|"]
    for tag, rows in runs.items():
        by_layer = {r["layer"]: r for r in rows}
        cells = [
            f"{100 * by_layer[k]['heldout_accuracy']:.1f}" if k in by_layer else "-"
            for k, _ in columns
        ]
        chance = f"{100 * rows[0]['chance']:.1f}" if rows else "-"
        lines.append(f"| {tag} | " + " | ".join(cells) + f" | {chance} |")
    first = next(iter(runs.values()))
    note = (
        f"\nSpeaker accuracy (%) on held-out utterances of {first[0]['num_speakers']} "
        f"speakers ({first[0]['num_train']} train / {first[0]['num_heldout']} held-out "
        "utterances); chance = majority speaker share.\n"
        if first
        else ""
    )
    return "\n".join(lines) + "\n" + note


def plot_accuracy(runs: Dict[str, List[dict]], path: str) -> None:
    """Held-out accuracy against layer, one line per model, chance dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    for tag, rows in runs.items():
        ax.plot([r["layer"] for r in rows], [100 * r["heldout_accuracy"] for r in rows], "o-", label=tag)
    chance = next(iter(runs.values()))[0]["chance"]
    ax.axhline(100 * chance, color="grey", linestyle="--", label="chance")
    layers = sorted({(r["layer"], r["name"]) for rows in runs.values() for r in rows})
    ax.set_xticks([k for k, _ in layers])
    ax.set_xticklabels([f"{n}\n({k})" if n != str(k) else str(k) for k, n in layers])
    ax.set_xlabel("encoder layer")
    ax.set_ylabel("speaker accuracy (%)")
    ax.set_ylim(0, 100)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=120)
    plt.close(fig)


def read_reports(paths: Sequence[Path]) -> Dict[str, List[dict]]:
    """``{tag: layer rows}`` of earlier runs' ``probe.json`` files, in the given order."""
    runs: Dict[str, List[dict]] = {}
    for path in paths:
        data = json.loads(Path(path).read_text())
        if "tag" not in data or "layers" not in data:
            raise ValueError(f"{path}: not a speaker probe result (needs 'tag' and 'layers')")
        runs[data["tag"]] = data["layers"]
    return runs


def write_tables(output_dir: Path, runs: Dict[str, List[dict]]) -> None:
    """``probe.md`` and ``probe.png`` of ``runs`` (one row / line per model)."""
    output_dir.mkdir(parents=True, exist_ok=True)
    with atomic_writer(output_dir / "probe.md") as f:
        f.write(markdown_table(runs))
    with atomic_path(output_dir / "probe.png", suffix=".png") as tmp:
        plot_accuracy(runs, tmp)


def write_report(output_dir: Path, tag: str, results: List[LayerResult], compare: Sequence[Path] = ()) -> None:
    """``probe.json`` (this run), ``probe.md`` and ``probe.png`` (with ``compare``)."""
    output_dir.mkdir(parents=True, exist_ok=True)
    rows = [asdict(r) for r in results]
    runs = read_reports(compare)
    runs[tag] = rows
    with atomic_writer(output_dir / "probe.json") as f:
        f.write(json.dumps({"tag": tag, "layers": rows}, indent=2) + "\n")
    write_tables(output_dir, runs)


def load_model(train_config: str, model_file: str, enh_s2t_task: bool, device: str) -> torch.nn.Module:
    """Build the stock ESPnet model of a checkpoint (a speaker branch is ignored)."""
    if enh_s2t_task:
        from espnet2.tasks.enh_s2t import EnhS2TTask as task
    else:
        from espnet2.tasks.asr import ASRTask as task
    model, _ = task.build_model_from_file(train_config, model_file, device)
    for p in model.parameters():
        p.requires_grad_(False)
    return model.eval()


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Per-layer speaker probing of a trained ESPnet ASR encoder "
        "(Adi et al. 2019, Figure 2)",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--train_config", help="the model's config.yaml (without it and --model_file: only merge the --compare results)"
    )
    parser.add_argument("--model_file", help="the model's .pth checkpoint")
    parser.add_argument("--enh_s2t_task", type=str2bool, default=False, help="joint SE + ASR checkpoint")
    parser.add_argument("--data_dir", type=Path, help="dir with wav.scp and utt2spk (needed to probe a model)")
    parser.add_argument("--output_dir", required=True, type=Path)
    parser.add_argument("--tag", default="model", help="name of this model in the table/plot")
    parser.add_argument(
        "--layers", nargs="+", default=["in", "mid", "out"],
        help="encoder layers: in / mid / out (paper fractions), 1-based numbers, or all",
    )
    parser.add_argument("--epochs", type=int, default=10, help="probe training epochs (paper: 10)")
    parser.add_argument("--heldout_fraction", type=float, default=0.2)
    parser.add_argument("--max_utts_per_speaker", type=int, default=0, help="0: all (bounds memory and time)")
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate of the probe")
    parser.add_argument("--channels", type=int, default=200, help="branch feature maps (paper: 200)")
    parser.add_argument("--kernel_size", type=int, default=5, help="branch conv width (paper: 5)")
    parser.add_argument("--tau", type=float, default=1.0, help="LogSumExp temperature (paper: 1)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--compare", nargs="*", default=[], type=Path, help="earlier probe.json files to add")
    return parser


def main(cmd: Optional[Sequence[str]] = None) -> None:
    parser = get_parser()
    args = parser.parse_args(cmd)
    if args.train_config is None and args.model_file is None:
        if not args.compare:
            parser.error("give --train_config, --model_file and --data_dir to probe a model, or --compare files to merge")
        runs = read_reports(args.compare)
        write_tables(args.output_dir, runs)
        sys.stdout.write(markdown_table(runs))
        return
    if args.train_config is None or args.model_file is None or args.data_dir is None:
        parser.error("probing a model needs --train_config, --model_file and --data_dir")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s (%(module)s) %(levelname)s: %(message)s")
    model = load_model(args.train_config, args.model_file, args.enh_s2t_task, args.device)
    results = probe_layers(
        model,
        read_data_dir(args.data_dir),
        args.layers,
        heldout_fraction=args.heldout_fraction,
        max_utts_per_speaker=args.max_utts_per_speaker,
        seed=args.seed,
        device=args.device,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        channels=args.channels,
        kernel_size=args.kernel_size,
        tau=args.tau,
    )
    write_report(args.output_dir, args.tag, results, args.compare)
    sys.stdout.write(markdown_table({args.tag: [asdict(r) for r in results]}))


if __name__ == "__main__":
    main()
