#!/usr/bin/env python3
"""Noise invariance of student features: cosine similarity of clean vs noisy versions.

For every utterance of a data dir with a noisy ``wav.scp`` and a sample-aligned clean
``spk1.scp`` (the mini corpus's SIMU test set), each student checkpoint maps both
versions to its hidden states; the score of a layer is the mean over frames of
cos(h_clean[t], h_noisy[t]), averaged over utterances (1 = the noise leaves the features
unchanged). As a floor, the same number for mismatched pairs (utterance i clean vs
utterance i+1 noisy, cropped to the shorter) shows how similar unrelated frames already
are (features share a common direction, so 0 is not the floor). The same two numbers are
also given after subtracting each layer's mean feature (over all frames of both versions of
all utterances), which removes that common direction: the centred mismatched score is near
0, and the centred matched score is the noise invariance that does not come from it.

Writes ``--out`` (JSON: system -> layer -> {matched, mismatched}) and ``--out_md`` (a
Markdown table), each atomically.

    noise_invariance.py --distill_config exp/distill/config.yaml \
        --system before=exp/distill_init/init.pth --system after=exp/distill/valid.loss.best.pth \
        --data_dir data/et05_simu_isolated_1ch_track --out exp/noise_invariance.json
"""

import argparse
import json
import sys
from pathlib import Path
from typing import Dict, List

import soundfile
import torch

from espnet2.asr.frontend.robust_distiller import load_student
from espnet2.distill.losses import mean_frame_cosine
from espnet2.fileio.atomic_write import atomic_writer


def read_scp(path: Path) -> Dict[str, str]:
    table = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        parts = line.split(maxsplit=1)
        if len(parts) != 2:
            raise ValueError(f"{path}:{number}: expected '<utt> <wav path>'")
        table[parts[0]] = parts[1]
    return table


def load_pairs(data_dir: Path, max_utts: int) -> List[tuple]:
    noisy, clean = read_scp(data_dir / "wav.scp"), read_scp(data_dir / "spk1.scp")
    pairs = []
    for utt in sorted(noisy)[:max_utts]:
        if utt not in clean:
            raise ValueError(f"{data_dir}/spk1.scp: no clean reference for {utt}")
        x, fs_x = soundfile.read(noisy[utt], dtype="float32")
        y, fs_y = soundfile.read(clean[utt], dtype="float32")
        if fs_x != 16000 or fs_y != 16000 or x.shape != y.shape or x.ndim != 1:
            raise ValueError(f"utterance {utt}: noisy and clean must be mono 16 kHz of one length")
        pairs.append((utt, torch.from_numpy(x), torch.from_numpy(y)))
    if not pairs:
        raise ValueError(f"{data_dir}: no utterances")
    return pairs


def _scores(feats, layer: int, mean: torch.Tensor) -> Dict[str, float]:
    """Matched and mismatched mean frame cosine of one layer, after subtracting ``mean``."""
    matched, mismatched = [], []
    for i, (hc, hn, frames) in enumerate(feats):
        matched.append(mean_frame_cosine(hc[layer] - mean, hn[layer] - mean, frames).item())
        _, ho, fo = feats[(i + 1) % len(feats)]
        t = min(hc[layer].size(1), ho[layer].size(1))
        a, b = hc[layer][:, :t] - mean, ho[layer][:, :t] - mean
        mismatched.append(mean_frame_cosine(a, b, torch.minimum(frames, fo).clamp(max=t)).item())
    return {"matched": sum(matched) / len(matched), "mismatched": sum(mismatched) / len(mismatched)}


@torch.no_grad()
def layer_similarity(student, pairs) -> Dict[str, Dict[str, float]]:
    """Per hidden state: raw and mean-centred cosine scores (see the module docstring)."""
    feats = []
    for _, noisy, clean in pairs:
        length = torch.tensor([noisy.numel()])
        hc, frames = student.features(clean[None], length)
        hn, _ = student.features(noisy[None], length)
        feats.append((hc, hn, frames))
    result = {}
    for layer in range(len(feats[0][0])):
        frames_of_layer = [
            h[layer][0, : int(f)] for hc, hn, f in feats for h in (hc, hn)
        ]
        centre = torch.cat(frames_of_layer).mean(0)
        raw = _scores(feats, layer, torch.zeros_like(centre))
        centred = _scores(feats, layer, centre)
        result[str(layer)] = {
            "matched": raw["matched"],
            "mismatched": raw["mismatched"],
            "centred_matched": centred["matched"],
            "centred_mismatched": centred["mismatched"],
        }
    return result


def markdown(results: Dict[str, Dict[str, Dict[str, float]]], data_dir: str, n: int) -> str:
    """Two tables (raw, mean-centred): system x hidden state, "matched (mismatched)"."""
    layers = list(next(iter(results.values())))
    lines = [
        f"Cosine similarity of student features, clean vs noisy version of the same utterance "
        f"({data_dir}, {n} utterances); in brackets: mismatched utterances, the floor.",
    ]
    for title, prefix in (("raw", ""), ("mean-centred", "centred_")):
        lines += [
            "",
            f"{title}:",
            "",
            "| student | " + " | ".join(f"hidden state {k}" for k in layers) + " |",
            "| --- |" + " --- |" * len(layers),
        ]
        for system, per_layer in results.items():
            cells = [
                f"{v[prefix + 'matched']:.3f} ({v[prefix + 'mismatched']:.3f})"
                for v in per_layer.values()
            ]
            lines.append(f"| {system} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--distill_config", required=True)
    parser.add_argument("--system", action="append", required=True, help="name=checkpoint.pth")
    parser.add_argument("--data_dir", required=True, type=Path)
    parser.add_argument("--max_utts", type=int, default=200)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--out_md", type=Path, default=None)
    args = parser.parse_args()
    try:
        pairs = load_pairs(args.data_dir, args.max_utts)
        results = {}
        for spec in args.system:
            name, sep, ckpt = spec.partition("=")
            if not sep:
                raise ValueError(f"--system {spec}: expected name=checkpoint.pth")
            student = load_student(args.distill_config, ckpt).eval()
            results[name] = layer_similarity(student, pairs)
    except (OSError, ValueError) as e:
        sys.exit(f"noise_invariance.py: {e}")
    with atomic_writer(args.out) as f:
        f.write(json.dumps(results, indent=2) + "\n")
    table = markdown(results, str(args.data_dir), len(pairs))
    if args.out_md:
        with atomic_writer(args.out_md) as f:
            f.write(table)
    print(table)


if __name__ == "__main__":
    main()
