"""Fabricated RATS channel A trees in the two layouts ``prepare_rats_cha`` reads.

Audio content is synthetic (seeded noise and tones); only layouts, lengths, rates and
time alignment matter to the preparation code.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np
import soundfile as sf

REPO = Path(__file__).resolve().parents[3]
RECIPE = REPO / "egs2" / "rats_chA" / "asr_with_enhancement"


def load_prep_module():
    """Import the recipe's ``local/prepare_rats_cha.py`` (recipes are not packages)."""
    spec = importlib.util.spec_from_file_location(
        "prepare_rats_cha", RECIPE / "local" / "prepare_rats_cha.py"
    )
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up here
    spec.loader.exec_module(mod)
    return mod


# Per split: (uttid, n_samples at 8 kHz, transcript); ids in the authors' form. The 480-sample
# (0.06 s) train utterance is below the recipe's 0.1 s minimum: stage 4 must drop it.
PAIRS: Dict[str, List[Tuple[str, int, str]]] = {
    "train": [
        ("fe_03_49740-04165-B-006411-006611-A", 16000, "yeah i think so"),
        ("fe_03_49740-04165-B-006700-006760-A", 480, "right"),
        ("fe_03_50001-04200-A-000100-000250-A", 12000, "where are you calling from"),
        ("fe_03_50001-04200-A-000300-000400-A", 8000, "uh huh"),
    ],
    "valid": [
        ("fe_03_55681-02161-B-040160-040260-A", 8000, "that is true"),
        ("fe_03_55681-02161-B-040300-040350-A", 4000, "okay"),
    ],
    "test": [
        ("fe_03_1781-02235-B-024485-024688-A", 16240, "i do not know"),
        ("fe_03_1781-02235-B-024700-024800-A", 8000, "sure"),
    ],
}


def make_pairs_tree(root: Path, fs: int = 8000) -> Path:
    """Write ``<root>/{split}/{noisy,clean}/<id>.wav`` and ``<root>/{split}/text``."""
    rng = np.random.default_rng(0)
    for split, utts in PAIRS.items():
        for kind in ("noisy", "clean"):
            (root / split / kind).mkdir(parents=True, exist_ok=True)
        lines = []
        for uttid, n, words in utts:
            clean = 0.1 * np.sin(2 * np.pi * 440 * np.arange(n) / fs)
            noisy = clean + 0.05 * rng.standard_normal(n)
            sf.write(str(root / split / "clean" / f"{uttid}.wav"), clean, fs, subtype="PCM_16")
            sf.write(str(root / split / "noisy" / f"{uttid}.wav"), noisy, fs, subtype="PCM_16")
            lines.append(f"{uttid} {words}\n")
        (root / split / "text").write_text("".join(reversed(lines)))  # unsorted on purpose
    return root


# LDC mode: one English source per part; channel A lags the source by DELAY seconds.
LDC_FS = 16000
DELAY = 0.02
SOURCES = {  # part -> (src id, session id, Fisher call, side)
    "train": ("10001", "20001", "fe_03_04165", "B"),
    "dev-1": ("10002", "20002", "fe_03_02161", "A"),
    "dev-2": ("10003", "20003", "fe_03_02235", "B"),
}
SOURCE_SECONDS = 6.0
# Fisher segments (start, end, words) on the source side; the last falls in an NT gap of A.
FISHER_SEGMENTS = [
    (0.50, 1.50, "hello [laughter] there"),
    (2.00, 3.00, "((i guess)) so"),
    (3.20, 3.40, "[noise]"),  # nothing left after normalisation: dropped
    (4.00, 5.00, "we lost the carrier"),  # overlaps NT in channel A: dropped
]
NT_GAP = (4.30, 4.60)  # channel-A time


def _sad_lines(file_id: str, channel: str, shift: float, gap=None) -> str:
    rows = [(0.0, 0.5, "NS"), (0.5, 1.5, "S"), (1.5, 2.0, "NS"), (2.0, 3.0, "S"), (3.0, 4.0, "NS"),
            (4.0, 5.0, "S")]
    lines = []
    for start, end, label in rows:
        lines.append(f"{channel}\t{file_id}\t{start + shift:.3f}\t{end + shift:.3f}\t{label}\tmanual")
    if gap:
        lines.append(f"{channel}\t{file_id}\t{gap[0]:.3f}\t{gap[1]:.3f}\tNT\tauto")
    return "\n".join(lines) + "\n"


def make_ldc_tree(root: Path) -> Tuple[Path, Path]:
    """Write a fake LDC2015S02 tree and Fisher transcripts; returns (ldc_root, fisher_root).

    The source audio is white noise (it matches itself only at lag 0, so alignment is testable);
    channel A is the source delayed by ``DELAY`` seconds plus noise.
    """
    rng = np.random.default_rng(1)
    ldc, fisher = root / "LDC2015S02", root / "fisher"
    (ldc / "docs").mkdir(parents=True)
    info = ["SRC_ID\tCORPUS\tLNG\tSRC_FILE\tMINUTES\tPART"]
    for part, (src, sess, call, side) in SOURCES.items():
        n = int(SOURCE_SECONDS * LDC_FS)
        src_sig = 0.2 * rng.standard_normal(n)
        shift = int(DELAY * LDC_FS)
        chan_sig = np.concatenate([np.zeros(shift), src_sig[: n - shift]]) + 0.01 * rng.standard_normal(n)
        audio = ldc / "data" / part / "audio" / "eng"
        sad = ldc / "data" / part / "sad" / "eng"
        for sub in ("src", "A"):
            (audio / sub).mkdir(parents=True)
            (sad / sub).mkdir(parents=True)
        sf.write(str(audio / "src" / f"{src}_eng_src.flac"), np.clip(src_sig, -1, 1), LDC_FS)
        sf.write(str(audio / "A" / f"{src}_{sess}_eng_A.flac"), np.clip(chan_sig, -1, 1), LDC_FS)
        (sad / "src" / f"{src}_eng_src.tab").write_text(_sad_lines(f"{src}_eng_src", "src", 0.0))
        (sad / "A" / f"{src}_{sess}_eng_A.tab").write_text(
            _sad_lines(f"{src}_{sess}_eng_A", "A", DELAY, NT_GAP)
        )
        info.append(f"{src}\tfe_03\teng\t{call}_{side}\t10.0\t{part}")
        (fisher / "trans").mkdir(parents=True, exist_ok=True)
        other = "A" if side == "B" else "B"
        lines = [f"# {call}.sph", ""]
        for start, end, words in FISHER_SEGMENTS:
            lines.append(f"{start:.2f} {end:.2f} {side}: {words}")
            lines.append(f"{start + 0.1:.2f} {end - 0.1:.2f} {other}: other side talking")
        (fisher / "trans" / f"{call}.txt").write_text("\n".join(lines) + "\n")
    (ldc / "docs" / "source_file_info.tab").write_text("\n".join(info) + "\n")
    return ldc, fisher
