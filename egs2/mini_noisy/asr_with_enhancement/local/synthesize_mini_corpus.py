#!/usr/bin/env python3
"""Synthesise the mini noisy corpus offline, written in the CHiME-4 on-disk shape.

``synthesize_mini_corpus(corpus_dir, config)`` speaks sentences of a closed command grammar
(``command_grammar``) with 24 espeak-ng speakers (``espeak_tts``), adds numpy-generated
noise (``noise_synthesis``) and writes a tree that the CHiME-4 preparation
(``prepare_chime4``) reads unchanged, so the mini recipe runs the real-corpus code path.

Speakers: ``F01``-``F12``, ``M01``-``M12`` (6 English base voices x espeak variants ``+f1..f4``
/ ``+m1..m7``, each with its own pitch, intonation range and speed). Speaker-disjoint splits,
as in CHiME-4: train (``tr05``) F01-F08 + M01-M08, dev (``dt05``) F09, F10, M09, M10, test
(``et05``) F11, F12, M11, M12.

Categories, as in CHiME-4:

* ``simu``: far channel ``CH5`` = clean + noise; the exact clean signal is written as the
  re-simulated reference ``isolated_ext/.../<stem>.CH5.Clean.wav`` (sample-aligned).
* ``real``: far channel ``CH5`` = clean through a short random room response + noise; a
  close-talk ``CH0`` = clean + the same noise 20 dB lower (a lapel microphone's leak). As in
  CHiME-4 there is no exact clean reference: the preparation uses ``CH0`` for dev/test and
  a dummy (``_REAL`` ids skip the SE loss) for training.
  Train: ``train_real_fraction`` of the utterances (default 0.2); dev/test: half.

Noise: the environment names of CHiME-4 stand for four noise types (``noise_synthesis``):
BUS = bus rumble, CAF = babble of 5-8 talkers of the same split, PED = pink noise,
STR = brown noise + white hiss. SNR (speech power over noise power over the whole
utterance, speech = the far channel's speech image): train uniform in [-5, 10] dB (rounded
to 0.01 dB), dev/test fixed at 0 and 5 dB, balanced over environment x SNR within each
category. ``data/annotations/mini_noisy_conditions.txt`` records every utterance's
``<stem> <set> <category> <ENV> <snr_db>`` for per-condition scoring.

Tree (16 kHz, 16-bit mono wav)::

    data/audio/16kHz/isolated/{tr05,dt05,et05}_{bus,caf,ped,str}_{simu,real}/<stem>.CH5.wav
                                                                (+ <stem>.CH0.wav for real)
    data/audio/16kHz/isolated_ext/<set>_<env>_simu/<stem>.CH5.Clean.wav
    data/audio/16kHz/isolated_1ch_track/{dt05,et05}_<env>_<cat>/<stem>.wav   (= CH5)
    data/annotations/{dt05,et05}_{real,simu}_1ch_track.list                 (channel 5)
    data/transcriptions/{tr05_real,dt05_real,et05_real,dt05_simu,et05_simu}.dot_all
    data/WSJ0/wsj0/transcrp/dots/si_tr_s/<spk>/<wsjid[:6]>00.dot            (tr05_simu text)
    mini_noisy.json                                   configuration, versions, speakers
    <stem> = <SPK>_<SPK>C<nnnn>_<ENV>, e.g. F09_F09C0003_CAF

Not written (the preparation does not need them with ``isolated_ext``): CH1-4/CH6,
``tr05_org``, booth recordings, JSON annotations, ``.Noise.wav`` (noise = CH5 - Clean).

Determinism: the same configuration and library versions give byte-identical files; each
utterance draws from its own random stream ``(seed, set, index)``. The tree is written to a
temporary sibling and renamed into place; an existing tree made with the same configuration
and versions is kept as it is.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import multiprocessing
import os
import shutil
import sys
import tempfile
import time
import wave
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import scipy
import scipy.signal

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import command_grammar  # noqa: E402
import noise_synthesis as ns  # noqa: E402
from espeak_tts import get_espeak  # noqa: E402

FS = ns.FS
ENVIRONMENTS = ("BUS", "CAF", "PED", "STR")
SETS = ("tr05", "dt05", "et05")  # train, dev, test
CHANNEL = 5  # the far channel written (and the 1ch track's channel)
SIZES = {"default": (3000, 200, 400), "smoke": (40, 16, 32)}  # (train, dev, test) utterances
CLEAN_RMS_DBFS = -25.0
PEAK_LIMIT = 0.99
CLOSE_TALK_LEAK_DB = -20.0
BABBLE_POOL = 64  # clean utterances per set that babble talkers are drawn from
CHUNK = 32  # utterances per worker process (fixed: the output must not depend on nj)
PAD_S = (0.1, 0.3)  # silence before and after the speech, uniform
CONDITIONS_FILE = "data/annotations/mini_noisy_conditions.txt"
INFO_FILE = "mini_noisy.json"
FORMAT_VERSION = 1

BASE_VOICES = ("en-us", "en", "en-gb-x-rp", "en-us-nyc", "en-gb-scotland", "en-gb-x-gbclan")
FEMALE_VARIANTS = ("f1", "f2", "f3", "f4")
MALE_VARIANTS = ("m1", "m2", "m3", "m4", "m5", "m6", "m7")
SPEAKERS_PER_GENDER = 12
SPLIT_OF_SPEAKER_INDEX = ("tr05",) * 8 + ("dt05",) * 2 + ("et05",) * 2

logger = logging.getLogger("synthesize_mini_corpus")


@dataclass(frozen=True)
class MiniCorpusConfig:
    """What the corpus is made of; every field is part of the reproducibility signature."""

    seed: int = 0
    num_train: int = SIZES["default"][0]
    num_dev: int = SIZES["default"][1]
    num_test: int = SIZES["default"][2]
    train_real_fraction: float = 0.2
    train_snr_range: Tuple[float, float] = (-5.0, 10.0)
    test_snrs: Tuple[float, ...] = (0.0, 5.0)
    babble_talkers: Tuple[int, int] = (5, 8)

    def __post_init__(self):
        for name in ("num_train", "num_dev", "num_test"):
            if getattr(self, name) < 2:
                raise ValueError(f"{name} must be at least 2 (one simu and one real utterance)")
        if not 0.0 < self.train_real_fraction < 1.0:
            raise ValueError("train_real_fraction must be strictly between 0 and 1")
        if self.train_snr_range[0] > self.train_snr_range[1]:
            raise ValueError(f"train_snr_range must be (min, max) with min <= max, got {self.train_snr_range}")
        if not self.test_snrs:
            raise ValueError("test_snrs must name at least one SNR")
        if not 1 <= self.babble_talkers[0] <= self.babble_talkers[1]:
            raise ValueError("babble_talkers must be (min, max) with 1 <= min <= max")


@dataclass(frozen=True)
class Speaker:
    spk_id: str
    voice: str
    pitch: int  # espeak 0-99
    pitch_range: int  # espeak 0-99
    rate_wpm: int
    set_name: str


@dataclass(frozen=True)
class PlannedUtterance:
    set_name: str  # tr05 / dt05 / et05
    index: int  # position within its set: selects the utterance's random stream
    category: str  # simu / real
    speaker: Speaker
    stem: str  # <SPK>_<WSJID>_<ENV>
    env: str  # BUS / CAF / PED / STR
    snr_db: float
    text: str

    @property
    def wsj_id(self) -> str:
        return self.stem.split("_")[1]

    @property
    def sub_dir(self) -> str:
        return f"{self.set_name}_{self.env.lower()}_{self.category}"


def make_speakers(seed: int) -> List[Speaker]:
    """The 24 speakers (voices fixed, pitch/range/speed drawn from ``seed``)."""
    rng = np.random.default_rng([seed, 1])
    speakers = []
    for gender, variants in (("F", FEMALE_VARIANTS), ("M", MALE_VARIANTS)):
        for i in range(SPEAKERS_PER_GENDER):
            voice = f"{BASE_VOICES[i % len(BASE_VOICES)]}+{variants[i % len(variants)]}"
            pitch, pitch_range, rate = int(rng.integers(35, 66)), int(rng.integers(30, 71)), int(rng.integers(140, 181))
            speakers.append(Speaker(f"{gender}{i + 1:02d}", voice, pitch, pitch_range, rate, SPLIT_OF_SPEAKER_INDEX[i]))
    return speakers


def _balanced(rng: np.random.Generator, items: Sequence, n: int) -> List:
    """``items`` repeated to length n (each equally often, up to one), in random order."""
    out = [items[i % len(items)] for i in range(n)]
    return [out[i] for i in rng.permutation(n)]


def plan_corpus(config: MiniCorpusConfig) -> List[PlannedUtterance]:
    """Who says what, in which category, environment and SNR; no audio yet."""
    rng = np.random.default_rng([config.seed, 0])
    speakers = make_speakers(config.seed)
    sizes = dict(zip(SETS, (config.num_train, config.num_dev, config.num_test)))
    counters: Dict[str, int] = {}
    train_sentences = set()
    plan: List[PlannedUtterance] = []
    for set_name in SETS:
        n = sizes[set_name]
        n_real = min(n - 1, max(1, round(n * config.train_real_fraction))) if set_name == "tr05" else n // 2
        categories = _balanced(rng, ["real"] * n_real + ["simu"] * (n - n_real), n)
        spk = _balanced(rng, [s for s in speakers if s.set_name == set_name], n)
        if set_name == "tr05":
            lo, hi = config.train_snr_range
            conditions = [(ENVIRONMENTS[int(rng.integers(4))], round(float(rng.uniform(lo, hi)), 2)) for _ in range(n)]
        else:  # environment x SNR balanced within each category
            cells = [(env, float(snr)) for snr in config.test_snrs for env in ENVIRONMENTS]
            per_cat = {c: iter(_balanced(rng, cells, categories.count(c))) for c in ("real", "simu")}
            conditions = [next(per_cat[c]) for c in categories]
        for i in range(n):
            text = command_grammar.sample_sentence(rng)
            if set_name == "tr05":
                train_sentences.add(text)
            else:
                for _ in range(1000):  # dev/test sentences never occur in training
                    if text not in train_sentences:
                        break
                    text = command_grammar.sample_sentence(rng)
                else:
                    raise RuntimeError("could not draw a dev/test sentence unseen in training")
            s = spk[i]
            count = counters.get(s.spk_id, 0)
            if count >= 10000:
                raise ValueError(f"more than 10000 utterances for speaker {s.spk_id}: ids would not fit")
            counters[s.spk_id] = count + 1
            env, snr = conditions[i]
            stem = f"{s.spk_id}_{s.spk_id}C{count:04d}_{env}"
            plan.append(PlannedUtterance(set_name, i, categories[i], s, stem, env, snr, text))
    return plan


class Renderer:
    """Turns planned utterances into waveforms (float64, 16 kHz)."""

    def __init__(self, config: MiniCorpusConfig):
        self.config = config
        self.espeak = get_espeak()
        if self.espeak.sample_rate != 22050:
            raise RuntimeError(f"expected espeak-ng at 22050 Hz, got {self.espeak.sample_rate}")
        # 22050 -> 16000 Hz is up 320 / down 441; scipy's default resample_poly filter, designed once.
        self._up, self._down = 320, 441
        self._filter = scipy.signal.firwin(2 * 10 * self._down + 1, 1.0 / self._down, window=("kaiser", 5.0))

    def _rng(self, utt: PlannedUtterance, stream: int) -> np.random.Generator:
        return np.random.default_rng([self.config.seed, SETS.index(utt.set_name) + 2, utt.index, stream])

    def clean(self, utt: PlannedUtterance) -> np.ndarray:
        """The dry utterance: TTS, resampled, at CLEAN_RMS_DBFS, padded with silence. Shape (n,)."""
        rng = self._rng(utt, 0)
        s = utt.speaker
        rate = s.rate_wpm + int(rng.integers(-8, 9))
        pcm = self.espeak.synthesize(utt.text, s.voice, rate, s.pitch, s.pitch_range, seed=int(rng.integers(2**31)))
        x = scipy.signal.resample_poly(pcm / 32768.0, self._up, self._down, window=self._filter)
        x = x * (10 ** (CLEAN_RMS_DBFS / 20) / np.sqrt(np.mean(x * x)))
        lead, trail = (int(rng.uniform(*PAD_S) * FS) for _ in range(2))
        return np.concatenate([np.zeros(lead), x, np.zeros(trail)])

    def noise(self, utt: PlannedUtterance, n: int, rng: np.random.Generator, pool: Sequence[Tuple[str, np.ndarray]]) -> np.ndarray:
        if utt.env == "BUS":
            return ns.bus_noise(rng, n)
        if utt.env == "PED":
            return ns.colored_noise(rng, n, 1.0)
        if utt.env == "STR":
            return ns.street_noise(rng, n)
        others = [x for spk, x in pool if spk != utt.speaker.spk_id]
        k = int(rng.integers(self.config.babble_talkers[0], self.config.babble_talkers[1] + 1))
        picks = rng.choice(len(others), size=k, replace=len(others) < k)
        return ns.babble_noise(rng, n, [others[i] for i in picks])

    def mix(self, utt: PlannedUtterance, clean: np.ndarray, pool) -> Dict[str, np.ndarray]:
        """{"far": CH5, "clean": reference (simu) or "close": CH0 (real)}, peak-limited together."""
        rng = self._rng(utt, 1)
        image = clean
        if utt.category == "real":
            image = scipy.signal.oaconvolve(clean, ns.far_field_response(rng))[: len(clean)]
        noise = ns.scale_to_snr(image, self.noise(utt, len(clean), rng, pool), utt.snr_db)
        out = {"far": image + noise}
        if utt.category == "real":
            out["close"] = clean + 10 ** (CLOSE_TALK_LEAK_DB / 20) * noise
        else:
            out["clean"] = clean
        peak = max(np.max(np.abs(x)) for x in out.values())
        gain = min(1.0, PEAK_LIMIT / peak)
        return {k: x * gain for k, x in out.items()}


def _chunks(utts: List[PlannedUtterance]) -> List[List[PlannedUtterance]]:
    return [utts[i : i + CHUNK] for i in range(0, len(utts), CHUNK)]


def to_int16(x: np.ndarray) -> np.ndarray:
    return np.clip(np.round(x * 32767.0), -32768, 32767).astype(np.int16)


def _write_wav(path: Path, x: np.ndarray) -> None:
    """16-bit mono wav. The stdlib writer: soundfile's close() fsyncs every file (10+ ms each)."""
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(FS)
        w.writeframes(to_int16(x).astype("<i2").tobytes())


def _write_text(path: Path, lines: Sequence[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.writelines(line + "\n" for line in lines)


def signature(config: MiniCorpusConfig) -> dict:
    """Everything the corpus's bytes depend on."""
    return {
        "format": FORMAT_VERSION,
        "config": dataclasses.asdict(config),
        "espeak_ng": get_espeak().version,
        "numpy": np.__version__,
        "scipy": scipy.__version__,
    }


def _render_and_write(u: PlannedUtterance, renderer: Renderer, pool, audio: Path) -> float:
    """Render one utterance and write its wav files; returns its duration in seconds."""
    clean = pool[u.index][1] if u.index < len(pool) else renderer.clean(u)
    signals = renderer.mix(u, clean, pool)
    _write_wav(audio / "isolated" / u.sub_dir / f"{u.stem}.CH{CHANNEL}.wav", signals["far"])
    if u.category == "real":
        _write_wav(audio / "isolated" / u.sub_dir / f"{u.stem}.CH0.wav", signals["close"])
    else:
        _write_wav(audio / "isolated_ext" / u.sub_dir / f"{u.stem}.CH{CHANNEL}.Clean.wav", signals["clean"])
    if u.set_name != "tr05":
        _write_wav(audio / "isolated_1ch_track" / u.sub_dir / f"{u.stem}.wav", signals["far"])
    return len(clean) / FS


_WORKER_STATE: dict = {}  # what forked workers inherit: renderer, babble pool, audio root


def _clean_chunk(utts: List[PlannedUtterance]) -> List[np.ndarray]:
    return [_WORKER_STATE["renderer"].clean(u) for u in utts]


def _render_chunk(utts: List[PlannedUtterance]) -> float:
    state = _WORKER_STATE
    return sum(_render_and_write(u, state["renderer"], state["pool"], state["audio"]) for u in utts)


def _map_in_fresh_processes(func, chunks: List[List[PlannedUtterance]], nj: int) -> list:
    """``[func(chunk) for chunk in chunks]``, each call in its own process forked from this one.

    espeak-ng keeps state across calls (its pitch flutter continues from one utterance to the
    next), so an utterance's samples depend on what the process spoke before. A process per
    chunk, forked from a parent that never speaks, makes every chunk start from the same
    state; with fixed chunks the output is the same for any ``nj``.
    """
    with multiprocessing.get_context("fork").Pool(nj, maxtasksperchild=1) as workers:
        return workers.map(func, chunks, chunksize=1)


def _write_tree(root: Path, config: MiniCorpusConfig, plan: List[PlannedUtterance], nj: int) -> float:
    """Render and write every file of the corpus under ``root`` with ``nj`` processes;
    returns seconds of audio. The output does not depend on ``nj``."""
    audio = root / "data" / "audio" / "16kHz"
    for set_name in SETS:
        for env in ENVIRONMENTS:
            for cat in ("simu", "real"):
                (audio / "isolated" / f"{set_name}_{env.lower()}_{cat}").mkdir(parents=True)
                if cat == "simu":
                    (audio / "isolated_ext" / f"{set_name}_{env.lower()}_{cat}").mkdir(parents=True)
                if set_name != "tr05":
                    (audio / "isolated_1ch_track" / f"{set_name}_{env.lower()}_{cat}").mkdir(parents=True)
    _WORKER_STATE.update(renderer=Renderer(config), audio=audio, pool=[])
    seconds = 0.0
    try:
        for set_name in SETS:
            utts = [u for u in plan if u.set_name == set_name]
            pool_utts = utts[:BABBLE_POOL]
            cleans = _map_in_fresh_processes(_clean_chunk, _chunks(pool_utts), nj)
            _WORKER_STATE["pool"] = [(u.speaker.spk_id, x) for u, x in zip(pool_utts, (x for c in cleans for x in c))]
            seconds += sum(_map_in_fresh_processes(_render_chunk, _chunks(utts), nj))
    finally:
        _WORKER_STATE.clear()

    data = root / "data"
    by_stem = sorted(plan, key=lambda u: u.stem)
    for set_name in SETS:
        for cat in ("real", "simu"):
            utts = [u for u in by_stem if u.set_name == set_name and u.category == cat]
            if set_name == "tr05" and cat == "simu":
                dots: Dict[Path, List[str]] = {}
                for u in utts:
                    spk = u.speaker.spk_id.lower()
                    dot = data / "WSJ0/wsj0/transcrp/dots/si_tr_s" / spk / f"{u.wsj_id[:6].lower()}00.dot"
                    dots.setdefault(dot, []).append(f"{u.text} ({u.wsj_id.lower()})")
                for dot, lines in dots.items():
                    _write_text(dot, lines)
                continue
            _write_text(data / "transcriptions" / f"{set_name}_{cat}.dot_all", [f"{u.text} ({u.stem})" for u in utts])
            if set_name != "tr05":
                _write_text(
                    data / "annotations" / f"{set_name}_{cat}_1ch_track.list",
                    [f"{u.sub_dir}/{u.stem}.CH{CHANNEL}.wav" for u in utts],
                )
    _write_text(
        root / CONDITIONS_FILE,
        [f"{u.stem} {u.set_name} {u.category} {u.env} {u.snr_db:g}" for u in by_stem],
    )
    return seconds


def _cpu_seconds() -> float:
    """CPU time (user + system) of this process and of its finished worker processes."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def synthesize_mini_corpus(corpus_dir: os.PathLike, config: MiniCorpusConfig = MiniCorpusConfig(), nj: int = 1) -> dict:
    """Write the mini corpus to ``corpus_dir`` (see the module docstring) with ``nj`` processes.

    Returns statistics: ``utterances``, ``audio_seconds``, ``elapsed_seconds`` (wall clock),
    ``utterances_per_second``, ``cpu_seconds`` (this process and its workers),
    ``utterances_per_cpu_second`` and ``skipped`` (True, and no other key, when an identical
    corpus was already there).
    """
    corpus_dir = Path(corpus_dir)
    sig = json.loads(json.dumps(signature(config)))  # tuples -> lists, as read back
    info_path = corpus_dir / INFO_FILE
    if info_path.is_file():
        with open(info_path, encoding="utf-8") as f:
            if json.load(f).get("signature") == sig:
                logger.info("%s is up to date (same configuration and versions): kept", corpus_dir)
                return {"skipped": True}
    if nj < 1:
        raise ValueError(f"nj must be at least 1, got {nj}")
    start, cpu_start = time.perf_counter(), _cpu_seconds()
    plan = plan_corpus(config)
    corpus_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{corpus_dir.name}.tmp.", dir=corpus_dir.parent))
    try:
        seconds = _write_tree(tmp, config, plan, nj)
        info = {
            "signature": sig,
            "speakers": [dataclasses.asdict(s) for s in make_speakers(config.seed)],
            "environments": ns.NOISE_OF_ENVIRONMENT,
            "utterances": {f"{s}_{c}": sum(u.set_name == s and u.category == c for u in plan) for s in SETS for c in ("simu", "real")},
        }
        with open(tmp / INFO_FILE, "w", encoding="utf-8") as f:
            json.dump(info, f, indent=1, sort_keys=True)
            f.write("\n")
        os.chmod(tmp, 0o755)
        if corpus_dir.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{corpus_dir.name}.old.", dir=corpus_dir.parent))
            os.rename(corpus_dir, old / corpus_dir.name)
            os.rename(tmp, corpus_dir)
            shutil.rmtree(old)
        else:
            os.rename(tmp, corpus_dir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    elapsed = time.perf_counter() - start
    stats = {
        "nj": nj,
        "skipped": False,
        "utterances": len(plan),
        "audio_seconds": round(seconds, 1),
        "elapsed_seconds": round(elapsed, 2),
        "utterances_per_second": round(len(plan) / elapsed, 1),
        "cpu_seconds": round(_cpu_seconds() - cpu_start, 2),
    }
    stats["utterances_per_cpu_second"] = round(len(plan) / stats["cpu_seconds"], 1)
    logger.info("wrote %s: %s", corpus_dir, stats)
    return stats


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Synthesise the mini noisy corpus in the CHiME-4 on-disk shape (see the module docstring).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--corpus_dir", required=True)
    parser.add_argument("--size", choices=sorted(SIZES), default="default",
                        help="preset (train, dev, test) sizes: " + ", ".join(f"{k}={v}" for k, v in SIZES.items()))
    parser.add_argument("--num_train", type=int, default=None, help="override the preset")
    parser.add_argument("--num_dev", type=int, default=None, help="override the preset")
    parser.add_argument("--num_test", type=int, default=None, help="override the preset")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--nj", type=int, default=1, help="processes (the output does not depend on it)")
    parser.add_argument("--train_real_fraction", type=float, default=0.2)
    parser.add_argument("--train_snr_range", type=float, nargs=2, default=[-5.0, 10.0], metavar=("MIN", "MAX"))
    parser.add_argument("--test_snrs", type=float, nargs="+", default=[0.0, 5.0])
    parser.add_argument("--babble_talkers", type=int, nargs=2, default=[5, 8], metavar=("MIN", "MAX"))
    return parser


def config_from_args(args: argparse.Namespace) -> MiniCorpusConfig:
    n_train, n_dev, n_test = SIZES[args.size]
    return MiniCorpusConfig(
        seed=args.seed,
        num_train=args.num_train if args.num_train is not None else n_train,
        num_dev=args.num_dev if args.num_dev is not None else n_dev,
        num_test=args.num_test if args.num_test is not None else n_test,
        train_real_fraction=args.train_real_fraction,
        train_snr_range=tuple(args.train_snr_range),
        test_snrs=tuple(args.test_snrs),
        babble_talkers=tuple(args.babble_talkers),
    )


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = get_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s (%(module)s:%(lineno)d) %(levelname)s: %(message)s")
    try:
        config = config_from_args(args)
    except ValueError as e:
        logger.error("%s", e)
        return 2
    synthesize_mini_corpus(args.corpus_dir, config, args.nj)
    return 0


if __name__ == "__main__":
    sys.exit(main())
