#!/usr/bin/env python3
"""Write the recipe's RESULTS.md: the noise-invariance table and the downstream WERs.

Reads ``<expdir>/noise_invariance.json`` (stage 4) and, per system and test set,
``<expdir>/asr_<system>/decode_<set>/score_{wer,cer}/result.txt`` (stage 6; sclite's
reports, whose ``Sum/Avg`` row holds #Snt #Wrd Corr Sub Del Ins Err S.Err). Writes atomically.
"""

import argparse
import json
import re
import sys
from pathlib import Path
from typing import List

from espnet2.fileio.atomic_write import atomic_writer

HEADER = """# RobustDistiller on the mini noisy corpus

Produced by `./run.sh{smoke}` (egs2/mini_noisy/distill1). Distillation config: `{config}`;
teacher: `{teacher}`.

{teacher_note}**What the numbers mean.** "before" is the student as training starts
(with `init_from_teacher`, the tiny teacher's conv extractor, projection, positional conv and
first two layers: the teacher truncated to two layers; otherwise random weights); "after" is
the student after distillation with the
denoising task (it heard corrupted audio while the teacher heard clean audio). Noise
invariance: mean over frames and utterances of the cosine similarity between the student's
features of the clean and the noisy version of the same test utterance (the corpus's SIMU test
set: bus, cafe, pedestrian and street noise at 0 and 5 dB; the distillation corrupted its input
with white, pink or in-batch babble noise and synthetic reverberation, so the pink "pedestrian"
and babble "cafe" noises are of kinds it saw, bus and street are not); the number in brackets pairs each clean utterance with a different noisy utterance, the
level that says "no relation". Downstream ASR: a small Conformer CTC/attention model trained on
the noisy training set with the frozen student as front-end (softmax-weighted sum of its
hidden states), word and character error rates with sclite. The mean-centred table subtracts
each hidden state's mean feature over the test frames first: raw cosines between any two frames
are high because features share a common direction, and distillation can raise matched and
mismatched scores together; after centring the mismatched score is near 0 and the matched score
measures how much of the utterance-specific feature survives the noise.
"""

TINY_NOTE = """**The teacher is a tiny wav2vec 2.0-style model with RANDOM weights** (no pretrained
SSL model can be downloaded here): its layers are fixed random functions of the audio, not speech
representations, so the distillation targets carry no learned phonetic content and the absolute
error rates say little about RobustDistiller with a real teacher.

"""


def sum_avg(result: Path) -> List[float]:
    """sclite's Sum/Avg row: [#Snt, #Wrd, Corr, Sub, Del, Ins, Err, S.Err]."""
    for line in result.read_text().splitlines():
        if "Sum/Avg" in line:
            numbers = [float(v) for v in re.findall(r"-?\d+(?:\.\d+)?", line)]
            if len(numbers) >= 8:
                return numbers[-8:]
    raise ValueError(f"{result}: no Sum/Avg row with 8 numbers")


def noise_invariance_tables(invariance) -> str:
    """Raw and mean-centred tables: "matched (mismatched)" per student and hidden state."""
    layers = list(next(iter(invariance.values())))
    text = ""
    for title, prefix in (("Raw", ""), ("Mean-centred", "centred_")):
        text += f"{title}:\n\n"
        text += "| student | " + " | ".join(f"hidden state {k}" for k in layers) + " |\n"
        text += "| --- |" + " --- |" * len(layers) + "\n"
        for system, per_layer in invariance.items():
            cells = [
                f"{v[prefix + 'matched']:.3f} ({v[prefix + 'mismatched']:.3f})"
                for v in per_layer.values()
            ]
            text += f"| {system} | " + " | ".join(cells) + " |\n"
        text += "\n"
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--expdir", required=True, type=Path)
    parser.add_argument("--systems", nargs="+", required=True)
    parser.add_argument("--test_sets", nargs="+", required=True)
    parser.add_argument("--distill_config", required=True)
    parser.add_argument("--teacher", required=True, help="kind:path")
    parser.add_argument("--out", required=True, type=Path)
    args = parser.parse_args()
    try:
        invariance = json.loads((args.expdir / "noise_invariance.json").read_text())
        rows = []
        for system in args.systems:
            cells = []
            for test_set in args.test_sets:
                decode = args.expdir / f"asr_{system}" / f"decode_{test_set}"
                scores = []
                for unit in ("wer", "cer"):
                    result = decode / f"score_{unit}" / "result.txt"
                    if not result.is_file():
                        raise FileNotFoundError(f"{result} is missing (run stage 6)")
                    scores.append(sum_avg(result))
                (snt, wrd, _, sub, dele, ins, err, _), cer = scores
                cells.append(
                    f"{err:.1f} ({sub:.1f}/{dele:.1f}/{ins:.1f}) / {cer[6]:.1f} "
                    f"({int(snt)} utts, {int(wrd)} words)"
                )
            rows.append(f"| {system} | " + " | ".join(cells) + " |")
    except (OSError, ValueError) as e:
        sys.exit(f"write_results.py: {e}")
    kind = args.teacher.split(":", 1)[0]
    text = HEADER.format(
        smoke=" --smoke true" if args.expdir.name.endswith("_smoke") else "",
        config=args.distill_config,
        teacher=args.teacher,
        teacher_note=TINY_NOTE if kind == "tiny" else "",
    )
    text += "\n## Noise invariance (cosine similarity, clean vs noisy; higher = more invariant)\n\n"
    text += noise_invariance_tables(invariance)
    text += "## Downstream ASR: WER % (sub/del/ins) / CER %\n\n"
    text += "| front-end student | " + " | ".join(args.test_sets) + " |\n"
    text += "| --- |" + " --- |" * len(args.test_sets) + "\n"
    text += "\n".join(rows) + "\n"
    with atomic_writer(args.out) as f:
        f.write(text)


if __name__ == "__main__":
    main()
