"""Shared helpers for the CHiME-4 preparation tests: a fake corpus tree and data-dir checks.

``make_fake_chime4`` writes a small tree in the exact CHiME-4 layout (names, directories,
``.dot_all``/WSJ0 ``.dot`` transcripts, 1ch track lists, close-talk/booth/org/isolated_ext
references) with 10-sample wavs: the preparation never reads audio, only names.
``assert_kaldi_data_dir`` checks the invariants every data dir must satisfy.
"""

from __future__ import annotations

import os
import wave
from pathlib import Path
from typing import Dict, List

ENVS = ("bus", "caf", "ped", "str")


def write_wav(path: Path, n: int = 10) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(b"\x01\x00" * n)


def write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


# Real training utterances: stem -> raw .dot_all words (noise tokens, quoting, odd cases).
TR05_REAL = {
    "F02_22GC010A_BUS": "the [door_slam>] price \\'s <up> [loud_breath] --dash ten",
    "F02_22GC010B_BUS": "%percent rose ~ .point five .",
    "M02_22HC010C_CAF": "[<lip_smack] buy [phone_ring/] stocks [/phone_ring] now",
}
# Simulated training utterances: stem -> WSJ0 prompt words.
TR05_SIMU = {
    "011_011C0201_PED": "Stocks fell .PERIOD",
    "40A_40AC0202_STR": "<wow!> ,COMMA said [noise] she",
}
# 1ch track utterances: (set, category) -> [(stem, channel of the track, raw words)].
TRACK_1CH = {
    ("dt05", "real"): [("F01_050C0101_BUS", 5, "hello [breath] world"), ("M03_050C0102_CAF", 3, "good bye")],
    ("dt05", "simu"): [("F01_050C0103_BUS", 1, "simulated one"), ("M03_050C0104_PED", 4, "simulated <two>")],
    ("et05", "real"): [("F05_440C0201_STR", 6, "eval real")],
    ("et05", "simu"): [("M05_440C0202_CAF", 5, "eval simu")],
}


def make_fake_chime4(root: Path) -> Dict[str, Path]:
    """Write a fake CHiME-4 ``CHiME3`` tree plus a CHiME4_diff annotations dir under ``root``.

    Returns the paths a test needs: ``corpus`` (the CHiME3 dir), ``extra_annotations``
    (CHiME4_diff/CHiME3/data/annotations, holding the et05 lists) and ``isolated_ext``.
    """
    corpus = root / "CHiME4" / "CHiME3"
    iso = corpus / "data" / "audio" / "16kHz" / "isolated"
    track = corpus / "data" / "audio" / "16kHz" / "isolated_1ch_track"
    ext = root / "nn-gev" / "isolated_ext"
    ann = corpus / "data" / "annotations"
    diff_ann = root / "CHiME4_diff" / "CHiME3" / "data" / "annotations"
    trans = corpus / "data" / "transcriptions"
    for s in ("tr05", "dt05", "et05"):
        for env in ENVS:
            for cat in ("real", "simu"):
                (iso / f"{s}_{env}_{cat}").mkdir(parents=True, exist_ok=True)
                if s != "tr05":
                    (track / f"{s}_{env}_{cat}").mkdir(parents=True, exist_ok=True)
    ann.mkdir(parents=True, exist_ok=True)
    write_text(ann / "tr05_real.json", "[]\n")  # present in the package; not read

    for stem in TR05_REAL:
        env = stem[-3:].lower()
        for ch in range(7):
            write_wav(iso / f"tr05_{env}_real" / f"{stem}.CH{ch}.wav")
    write_text(iso / "tr05_bus_real" / "README.txt", "not audio: ignored\n")
    write_text(trans / "tr05_real.dot_all", "".join(f"{w} ({s})\n" for s, w in TR05_REAL.items()))

    for stem, words in TR05_SIMU.items():
        spk, wsj, env = stem.split("_")
        for ch in range(1, 7):
            write_wav(iso / f"tr05_{env.lower()}_simu" / f"{stem}.CH{ch}.wav")
            write_wav(ext / f"tr05_{env.lower()}_simu" / f"{stem}.CH{ch}.Clean.wav")
        write_wav(iso / "tr05_org" / f"{spk}_{wsj}_ORG.wav")
        dot = corpus / "data" / "WSJ0" / "wsj0" / "transcrp" / "dots" / "si_tr_s" / spk.lower() / f"{wsj[:6].lower()}00.dot"
        other = f"an unused prompt ({wsj[:6].lower()}99)\n"  # WSJ0 dots hold more prompts
        write_text(dot, other + f"{words} ({wsj.lower()})\n")

    for (s, cat), utts in TRACK_1CH.items():
        lines = []
        for stem, ch, _ in utts:
            spk, wsj, env = stem.split("_")
            sub = f"{s}_{env.lower()}_{cat}"
            channels = range(7) if cat == "real" else range(1, 7)
            for c in channels:
                write_wav(iso / sub / f"{stem}.CH{c}.wav")
                if cat == "simu":
                    write_wav(ext / sub / f"{stem}.CH{c}.Clean.wav")
            write_wav(track / sub / f"{stem}.wav")
            if cat == "simu":
                write_wav(iso / f"{s}_bth" / f"{spk}_{wsj}_BTH.CH0.wav")
            lines.append(f"{sub}/{stem}.CH{ch}.wav\n")
        write_text((ann if s == "dt05" else diff_ann) / f"{s}_{cat}_1ch_track.list", "".join(lines))
        write_text(trans / f"{s}_{cat}.dot_all", "".join(f"{w} ({stem})\n" for stem, _, w in utts))
    return {"corpus": corpus, "extra_annotations": diff_ann, "isolated_ext": ext}


def read_table(path: Path) -> Dict[str, str]:
    """A Kaldi ``key value...`` file as {key: rest of the line}."""
    out = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        key, _, value = line.partition(" ")
        out[key] = value
    return out


def assert_kaldi_data_dir(d: Path, files=("wav.scp", "spk1.scp", "text", "text_spk1", "utt2spk", "spk2utt", "utt2category")) -> List[str]:
    """Check what Kaldi's validate_data_dir.sh and ESPnet's loaders rely on; return the ids.

    Every per-utterance file has the same keys, sorted in C byte order, without duplicates;
    spk2utt is the exact inverse of utt2spk; every speaker is a prefix of its utterance ids
    (so both sort orders agree); text and text_spk1 are identical; every scp path exists.
    """
    assert sorted(os.listdir(d)) == sorted(files), f"{d}: {sorted(os.listdir(d))}"
    per_utt = [f for f in files if f != "spk2utt"]
    keys = None
    for name in per_utt:
        lines = (d / name).read_text(encoding="utf-8").splitlines()
        k = [line.split(" ", 1)[0] for line in lines]
        assert k == sorted(k, key=lambda s: s.encode()), f"{d / name} not in C sort order"
        assert len(set(k)) == len(k), f"{d / name} has duplicate keys"
        if keys is None:
            keys = k
        assert k == keys, f"{d / name} keys differ from {d / per_utt[0]}"
    assert keys, f"{d} is empty"
    utt2spk = read_table(d / "utt2spk")
    spk2utt = {s: u.split() for s, u in read_table(d / "spk2utt").items()}
    assert list(spk2utt) == sorted(spk2utt, key=lambda s: s.encode())
    assert sorted(u for us in spk2utt.values() for u in us) == sorted(utt2spk)
    for spk, utts in spk2utt.items():
        assert utts == sorted(utts, key=lambda s: s.encode())
        assert all(utt2spk[u] == spk and u.startswith(spk + "_") for u in utts)
    assert (d / "text").read_bytes() == (d / "text_spk1").read_bytes()
    for scp in ("wav.scp", "spk1.scp"):
        for path in read_table(d / scp).values():
            assert Path(path).is_file(), f"{d / scp}: {path} does not exist"
    return keys
