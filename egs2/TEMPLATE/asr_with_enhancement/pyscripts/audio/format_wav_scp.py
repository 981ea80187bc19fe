#!/usr/bin/env python3
"""Convert the audio of an scp file to one sample rate, one channel and one format.

Call form (what ``scripts/audio/format_wav_scp.sh`` runs)::

    format_wav_scp.py [--nj 4] [--cmd utils/run.pl] [--fs 16000|16k] [--audio-format wav|flac]
                      [--out-filename wav.scp] [--ref-channels 0] in.scp outdir [logdir [audiodir]]

Each entry of ``in.scp`` is ``<utt> <path>`` or ``<utt> <shell command> |`` (the command writes
a wav/flac/... file to stdout). Channel ``--ref-channels`` (default 0, the first) is kept, the
signal is resampled to ``--fs`` with soxr (VHQ) and written as 16-bit PCM to
``audiodir/format.JOB/<utt>.<fmt>`` (``format_<name>.JOB`` for an ``--out-filename`` other
than ``wav.scp``, so that ``spk1.scp`` and ``wav.scp`` of the same directory do not collide;
``audiodir`` defaults to ``outdir/data``). The work is split into ``--nj`` jobs run by ``--cmd``
(logs with progress counts in ``logdir``, default ``outdir/logs``). When every job succeeded,
the driver writes, in this order and each atomically:

* the number of samples per utterance: ``outdir/utt2num_samples`` for ``wav.scp``, and
  ``outdir/utt2num_samples_<name>`` for any other ``<name>.scp`` (e.g.
  ``utt2num_samples_spk1``), so that formatting ``spk1.scp`` never overwrites the lengths of
  ``wav.scp``;
* ``outdir/<out-filename>``, last: its existence means the whole set is complete. It is removed
  at the start of a run, so an interrupted run leaves no scp a later stage could trust.

``--worker true`` is how the driver runs one part (``format_wav_scp.py --worker true ... part.scp
job_dir`` converts ``part.scp`` into ``job_dir`` and writes the part's scp and lengths there).

An unreadable entry stops its job with ``utterance '<utt>' (<scp>:<line>): cannot read
'<path>': <reason>``.
"""

from __future__ import annotations

import io
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Sequence

TEMPLATE_DIR = Path(__file__).resolve().parents[2]
if str(TEMPLATE_DIR) not in sys.path:
    sys.path.insert(0, str(TEMPLATE_DIR))

import numpy as np  # noqa: E402
import soundfile  # noqa: E402
import soxr  # noqa: E402

from pyscripts.utils.cli_options import OptionError, parse_value_options  # noqa: E402
from pyscripts.utils.scp_tools import split_scp  # noqa: E402
from pyscripts.utils.table_file import (  # noqa: E402
    Entry,
    TableError,
    read_table,
    write_lines_atomic,
)

PROG = "format_wav_scp.py"
OPTIONS = ("nj", "cmd", "fs", "audio_format", "out_filename", "ref_channels")
FORMATS = ("wav", "flac")


class FormatError(Exception):
    """Bad input or unreadable audio; the message names the utterance or file."""


def parse_fs(text: str) -> int:
    """Sample rate from ``16000`` or ESPnet's ``16k`` style."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([kK]?)", text.strip())
    if not match:
        raise FormatError(f"--fs must be like 16000 or 16k, got '{text}'")
    value = float(match.group(1)) * (1000 if match.group(2) else 1)
    if value <= 0 or value != int(value):
        raise FormatError(f"--fs must be a positive whole number of Hz, got '{text}'")
    return int(value)


def lengths_filename(out_filename: str) -> str:
    """``utt2num_samples`` for wav.scp, ``utt2num_samples_<name>`` for ``<name>.scp``."""
    stem = Path(out_filename).name
    stem = stem[: -len(".scp")] if stem.endswith(".scp") else stem
    return "utt2num_samples" if stem == "wav" else f"utt2num_samples_{stem}"


def audio_subdir(out_filename: str) -> str:
    """``format`` for wav.scp, ``format_<name>`` otherwise (audio goes to ``data/<this>.JOB``)."""
    name = lengths_filename(out_filename)
    return "format" if name == "utt2num_samples" else "format_" + name[len("utt2num_samples_"):]


def read_audio(entry: Entry, source: str) -> tuple[np.ndarray, int]:
    """Read one scp entry; return (signal, fs) with signal shaped (samples,) or (samples, ch)."""
    where = f"utterance '{entry.key}' ({source}:{entry.lineno})"
    value = entry.value
    if value.endswith("|"):
        command = value[:-1].strip()
        proc = subprocess.run(["bash", "-c", "set -o pipefail\n" + command], capture_output=True)
        if proc.returncode != 0:
            err = proc.stderr.decode("utf-8", "replace").strip()[-500:]
            raise FormatError(
                f"{where}: command '{command}' failed (exit {proc.returncode}): {err}"
            )
        data: str | io.BytesIO = io.BytesIO(proc.stdout)
        shown = f"the output of '{command}'"
    else:
        data = value
        shown = f"'{value}'"
    try:
        signal_, fs = soundfile.read(data, dtype="float64", always_2d=False)
    except (soundfile.LibsndfileError, RuntimeError, OSError, TypeError) as exc:
        raise FormatError(f"{where}: cannot read {shown}: {exc}") from None
    if signal_.size == 0:
        raise FormatError(f"{where}: {shown} has no samples")
    return signal_, fs


def convert(signal_: np.ndarray, fs_in: int, fs_out: int, channel: int, where: str) -> np.ndarray:
    """Select ``channel`` and resample; returns a 1-D float64 array in [-1, 1]."""
    if signal_.ndim == 2:
        if channel >= signal_.shape[1]:
            raise FormatError(
                f"{where}: has {signal_.shape[1]} channel(s), --ref-channels {channel} asked"
            )
        signal_ = signal_[:, channel]
    elif channel != 0:
        raise FormatError(f"{where}: is single-channel, --ref-channels {channel} asked")
    if fs_in != fs_out:
        signal_ = soxr.resample(signal_, fs_in, fs_out, quality="VHQ")
    return np.clip(signal_, -1.0, 1.0 - 1.0 / 32768)


def format_part(
    scp: str, job_dir: str, fs: int, audio_format: str, out_filename: str, channel: int
) -> int:
    """Worker: convert every entry of ``scp`` into ``job_dir``; write its scp + lengths."""
    entries = read_table(scp)
    out_dir = Path(job_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    scp_lines, len_lines = [], []
    step = max(1, len(entries) // 10)
    for done, entry in enumerate(entries, 1):
        where = f"utterance '{entry.key}' ({scp}:{entry.lineno})"
        signal_, fs_in = read_audio(entry, scp)
        out = convert(signal_, fs_in, fs, channel, where)
        path = out_dir / f"{entry.key}.{audio_format}"
        tmp = path.with_name("." + path.name + ".tmp")
        soundfile.write(tmp, out, fs, subtype="PCM_16", format=audio_format.upper())
        tmp.replace(path)
        scp_lines.append(f"{entry.key} {path}")
        len_lines.append(f"{entry.key} {len(out)}")
        if done % step == 0 or done == len(entries):
            print(f"{PROG}: {done}/{len(entries)} utterances done", file=sys.stderr, flush=True)
    write_lines_atomic(out_dir / lengths_filename(out_filename), len_lines)
    write_lines_atomic(out_dir / Path(out_filename).name, scp_lines)
    return len(entries)


def run_jobs(
    in_scp: str,
    outdir: str,
    logdir: str,
    audiodir: str,
    nj: int,
    cmd: str,
    fs: int,
    audio_format: str,
    out_filename: str,
    channel: int,
) -> int:
    """Driver: split, run the workers with ``cmd``, then merge atomically; return #utterances."""
    out = Path(outdir)
    final_scp = out / out_filename
    final_len = out / lengths_filename(out_filename)
    final_scp.unlink(missing_ok=True)
    final_len.unlink(missing_ok=True)
    entries = read_table(in_scp)
    seen: dict[str, int] = {}
    for e in entries:
        if e.key in seen:
            raise FormatError(
                f"{in_scp}:{e.lineno}: duplicate utterance '{e.key}' (line {seen[e.key]})"
            )
        if "/" in e.key:
            raise FormatError(f"{in_scp}:{e.lineno}: utterance id '{e.key}' contains '/'")
        seen[e.key] = e.lineno
    if not entries:
        raise FormatError(f"{in_scp}: empty")
    nj = min(nj, len(entries))
    stem = Path(out_filename).name.removesuffix(".scp")
    logdir = Path(logdir)
    parts = [str(logdir / f"{stem}.{j}.scp") for j in range(1, nj + 1)]
    split_scp(in_scp, parts)
    job_dir = Path(audiodir) / f"{audio_subdir(out_filename)}.JOB"
    worker = [
        sys.executable, str(Path(__file__).resolve()), "--worker", "true",
        "--fs", str(fs), "--audio-format", audio_format, "--out-filename", out_filename,
        "--ref-channels", str(channel), str(logdir / f"{stem}.JOB.scp"), str(job_dir),
    ]  # fmt: skip
    log = logdir / f"format_{stem}.JOB.log"
    proc = subprocess.run(shlex.split(cmd) + [f"JOB=1:{nj}", str(log)] + worker)
    if proc.returncode != 0:
        raise FormatError(
            f"{nj} job(s) run by '{cmd}' did not all succeed; see {log} (JOB=1..{nj})"
        )
    scp_lines, len_lines = [], []
    for j in range(1, nj + 1):
        part_dir = Path(str(job_dir).replace("JOB", str(j)))
        scp_lines += (part_dir / Path(out_filename).name).read_text(encoding="utf-8").splitlines()
        len_lines += (part_dir / final_len.name).read_text(encoding="utf-8").splitlines()
    if len(scp_lines) != len(entries):
        raise FormatError(
            f"jobs wrote {len(scp_lines)} entries for {len(entries)} utterances in {in_scp}"
        )
    write_lines_atomic(final_len, len_lines)
    write_lines_atomic(final_scp, scp_lines)
    print(
        f"{PROG}: wrote {final_scp} and {final_len} ({len(entries)} utterances)",
        file=sys.stderr,
    )
    return len(entries)


def main(argv: Sequence[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    try:
        opts, pos = parse_value_options(args, OPTIONS + ("worker",))
        worker = opts.get("worker") == "true"
        if not (len(pos) == 2 or (not worker and len(pos) in (3, 4))):
            raise FormatError(
                "usage: format_wav_scp.sh [--nj N] [--cmd CMD] [--fs 16k] "
                "[--audio-format wav|flac] [--out-filename wav.scp] [--ref-channels 0] "
                "<in.scp> <outdir> [<logdir> [<audiodir>]]"
            )
        fs = parse_fs(opts.get("fs", "16000"))
        audio_format = opts.get("audio_format", "wav")
        if audio_format not in FORMATS:
            raise FormatError(
                f"--audio-format must be one of {', '.join(FORMATS)}, got '{audio_format}'"
            )
        out_filename = opts.get("out_filename", "wav.scp")
        for name in ("nj", "ref_channels"):
            if not opts.get(name, "0").isdigit():
                raise FormatError(f"--{name} needs a non-negative integer, got '{opts[name]}'")
        channel = int(opts.get("ref_channels", "0"))
        if worker:
            format_part(pos[0], pos[1], fs, audio_format, out_filename, channel)
        else:
            nj = int(opts.get("nj", "1"))
            if nj < 1:
                raise FormatError("--nj must be at least 1")
            cmd = opts.get("cmd", str(TEMPLATE_DIR / "utils" / "run.pl"))
            logdir = pos[2] if len(pos) > 2 else str(Path(pos[1]) / "logs")
            audiodir = pos[3] if len(pos) > 3 else str(Path(pos[1]) / "data")
            run_jobs(
                pos[0], pos[1], logdir, audiodir, nj, cmd, fs, audio_format, out_filename, channel
            )
    except (FormatError, OptionError, TableError, OSError, ValueError) as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
