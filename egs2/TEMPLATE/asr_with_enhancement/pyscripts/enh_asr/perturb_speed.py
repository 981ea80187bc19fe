#!/usr/bin/env python3
"""Speed-perturb a Kaldi-style data dir for joint SE + ASR training (stage 2 of enh_asr.sh).

Speed perturbation by a factor f plays the waveform f times faster (tempo and pitch change together, as
sox's ``speed`` effect that Kaldi and ESPnet use): the samples are resampled from fs to fs/f and kept at fs,
so an utterance of T seconds lasts T/f seconds. The noisy input (``wav.scp``) and the clean reference
(``spk1.scp``) get the same perturbation, so ``noisy = clean + noise`` still holds.

Output: ``<dst>`` with ids ``sp<f>-<utt-id>``, speakers ``sp<f>-<spk>``, ``wav.scp``/``spk1.scp`` pointing to
the new audio files under ``--audio_dir``, and the ``--extra_files`` (``text_spk1``, ``utt2category``, ...)
re-keyed. The dir is written under a temporary name and renamed when complete.
"""

import argparse
import os
import shutil
import sys
from fractions import Fraction
from pathlib import Path
from typing import Dict, List


def read_table(path: Path) -> List[List[str]]:
    """``[key, rest]`` per line of a Kaldi table; a line without a value is an error naming it."""
    rows = []
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            fields = line.rstrip("\n").split(maxsplit=1)
            if len(fields) != 2:
                raise ValueError(f"{path}:{lineno}: expected '<key> <value>', got {line!r}")
            rows.append(fields)
    return rows


def perturb(signal, factor: Fraction):
    """``signal`` (samples [, channels]) played ``factor`` times faster: length ``ceil(len / factor)``."""
    from scipy.signal import resample_poly

    return resample_poly(signal, factor.denominator, factor.numerator, axis=0)


def perturb_scp(scp: Path, factor: Fraction, prefix: str, audio_dir: Path) -> Dict[str, str]:
    """Perturb every file of ``scp``; ``{new_id: new_path}``. Pipes and segments are not supported."""
    import soundfile as sf

    out = {}
    audio_dir.mkdir(parents=True, exist_ok=True)
    for key, path in read_table(scp):
        if path.rstrip().endswith("|"):
            raise ValueError(f"{scp}: utterance {key}: a pipe ({path!r}); run stage 3 first or use files")
        signal, fs = sf.read(path, always_2d=False)
        target = audio_dir / f"{prefix}{key}.wav"
        sf.write(target, perturb(signal, factor), fs, subtype="PCM_16")
        out[f"{prefix}{key}"] = str(target)
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--factor", required=True, help="speed factor, e.g. 0.9")
    parser.add_argument("--audio_dir", type=Path, required=True, help="where the perturbed audio goes")
    parser.add_argument("--extra_files", default="text_spk1 utt2category", help="re-keyed per-utterance files")
    parser.add_argument("src", type=Path)
    parser.add_argument("dst", type=Path)
    args = parser.parse_args(argv)
    factor = Fraction(args.factor).limit_denominator(100)
    if factor <= 0:
        print(f"perturb_speed.py: --factor must be positive, got {args.factor}", file=sys.stderr)
        return 1
    prefix = f"sp{args.factor}-"
    tmp = args.dst.with_name(args.dst.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        for scp in ("wav.scp", "spk1.scp"):
            table = perturb_scp(args.src / scp, factor, prefix, args.audio_dir / scp.split(".")[0])
            (tmp / scp).write_text("".join(f"{k} {v}\n" for k, v in sorted(table.items())), encoding="utf-8")
        utt2spk = read_table(args.src / "utt2spk")
        (tmp / "utt2spk").write_text(
            "".join(f"{prefix}{u} {prefix}{s}\n" for u, s in sorted(utt2spk)), encoding="utf-8"
        )
        spk2utt: Dict[str, List[str]] = {}
        for u, s in sorted(utt2spk):
            spk2utt.setdefault(f"{prefix}{s}", []).append(f"{prefix}{u}")
        (tmp / "spk2utt").write_text(
            "".join(f"{s} {' '.join(us)}\n" for s, us in sorted(spk2utt.items())), encoding="utf-8"
        )
        for name in args.extra_files.split():
            if (args.src / name).exists():
                rows = read_table(args.src / name)
                (tmp / name).write_text("".join(f"{prefix}{k} {v}\n" for k, v in sorted(rows)), encoding="utf-8")
    except (OSError, ValueError, RuntimeError) as e:
        print(f"perturb_speed.py: {e}", file=sys.stderr)
        return 1
    shutil.rmtree(args.dst, ignore_errors=True)
    os.replace(tmp, args.dst)
    return 0


if __name__ == "__main__":
    sys.exit(main())
