"""scripts/audio/format_wav_scp.sh: resample/convert an scp with the job runner, atomically."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

TEMPLATE = Path(__file__).resolve().parents[3] / "egs2" / "TEMPLATE" / "asr_with_enhancement"
SCRIPT = str(TEMPLATE / "scripts/audio/format_wav_scp.sh")


def env():
    # The script runs `python3`: put this interpreter's directory first, as path.sh does.
    return dict(os.environ, OMP_NUM_THREADS="1", PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")


def fmt(cwd, *args, **kw):
    return subprocess.run([SCRIPT, *map(str, args)], capture_output=True, text=True, cwd=cwd, env=env(), **kw)


def sine(freq, fs, seconds, amp=0.5):
    t = np.arange(int(fs * seconds)) / fs
    return amp * np.sin(2 * np.pi * freq * t)


@pytest.fixture
def corpus(tmp_path):
    """u1: 8 kHz stereo (ch0 = 440 Hz sine, ch1 = silence); u2: 16 kHz mono; u3: 44.1 kHz flac via a pipe."""
    stereo = np.stack([sine(440, 8000, 0.5), np.zeros(4000)], axis=1)
    sf.write(tmp_path / "u1.wav", stereo, 8000, subtype="PCM_16")
    sf.write(tmp_path / "u2.wav", sine(1000, 16000, 0.25), 16000, subtype="PCM_16")
    sf.write(tmp_path / "u3.flac", sine(300, 44100, 0.3), 44100)
    (tmp_path / "in.scp").write_text(
        f"u1 {tmp_path}/u1.wav\nu2 {tmp_path}/u2.wav\nu3 cat {tmp_path}/u3.flac |\n"
    )
    return tmp_path


def read_table(path):
    return dict(line.split(None, 1) for line in path.read_text().splitlines())


def test_resamples_to_mono_target_rate_and_counts_samples(corpus):
    p = fmt(corpus, "--nj", "2", "--fs", "16k", "in.scp", "out")
    assert p.returncode == 0, p.stderr
    scp = read_table(corpus / "out/wav.scp")
    lengths = {k: int(v) for k, v in read_table(corpus / "out/utt2num_samples").items()}
    # Durations are kept: 0.5 s, 0.25 s, 0.3 s at 16 kHz.
    assert lengths == {"u1": 8000, "u2": 4000, "u3": 4800}
    assert scp["u1"] == "out/data/format.1/u1.wav" and scp["u3"] == "out/data/format.2/u3.wav"
    for utt, freq in (("u1", 440), ("u2", 1000), ("u3", 300)):
        x, fs = sf.read(corpus / scp[utt])
        assert fs == 16000 and x.ndim == 1 and len(x) == lengths[utt]
        # The tone survives resampling: matches the analytic sine at 16 kHz (away from the edges).
        ref = sine(freq, 16000, len(x) / 16000)
        mid = slice(200, len(x) - 200)
        assert np.max(np.abs(x[mid] - ref[mid])) < 0.01, utt
    logs = (corpus / "out/logs/format_wav.1.log").read_text()
    assert "format_wav_scp.py: 2/2 utterances done" in logs


def test_ref_channels_selects_the_channel_and_flac_output(corpus):
    (corpus / "one.scp").write_text(f"u1 {corpus}/u1.wav\n")
    p = fmt(corpus, "--fs", "8000", "--ref-channels", "1", "--audio-format", "flac", "one.scp", "out")
    assert p.returncode == 0, p.stderr
    path = read_table(corpus / "out/wav.scp")["u1"]
    assert path.endswith(".flac")
    x, fs = sf.read(corpus / path)
    assert fs == 8000 and np.all(x == 0)  # channel 1 is the silent one


def test_other_scp_names_do_not_clobber_wav_lengths(corpus):
    assert fmt(corpus, "--fs", "16000", "in.scp", "out").returncode == 0
    before = (corpus / "out/utt2num_samples").read_text()
    p = fmt(corpus, "--fs", "8000", "--out-filename", "spk1.scp", "in.scp", "out")
    assert p.returncode == 0, p.stderr
    assert (corpus / "out/utt2num_samples").read_text() == before
    assert read_table(corpus / "out/utt2num_samples_spk1")["u1"] == "4000"
    assert read_table(corpus / "out/spk1.scp")["u1"] == "out/data/format_spk1.1/u1.wav"


def test_unreadable_audio_names_the_utterance_and_leaves_no_scp(corpus):
    assert fmt(corpus, "in.scp", "out").returncode == 0  # a complete earlier run
    (corpus / "bad.scp").write_text(f"u1 {corpus}/u1.wav\nu9 {corpus}/missing.wav\n")
    p = fmt(corpus, "--nj", "2", "bad.scp", "out")
    assert p.returncode == 1
    assert "1 / 2 failed, log is in out/logs/format_wav.2.log" in p.stderr
    log = (corpus / "out/logs/format_wav.2.log").read_text()
    assert f"utterance 'u9' (out/logs/wav.2.scp:1): cannot read '{corpus}/missing.wav'" in log
    # The old, complete wav.scp was removed when the run started; none claims completeness now.
    assert not (corpus / "out/wav.scp").exists() and not (corpus / "out/utt2num_samples").exists()


def test_failing_pipe_names_the_command(corpus):
    (corpus / "bad.scp").write_text("u1 false |\n")
    p = fmt(corpus, "bad.scp", "out")
    assert p.returncode == 1
    assert "utterance 'u1' (out/logs/wav.1.scp:1): command 'false' failed (exit 1)" in (
        corpus / "out/logs/format_wav.1.log"
    ).read_text()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--fs", "16kHz"], "--fs must be like 16000 or 16k"),
        (["--audio-format", "mp3"], "--audio-format must be one of wav, flac"),
        (["--nj", "0"], "--nj must be at least 1"),
        (["--bogus", "1"], "unknown option --bogus"),
    ],
)
def test_bad_options(corpus, args, message):
    p = fmt(corpus, *args, "in.scp", "out")
    assert p.returncode == 1 and message in p.stderr


def test_duplicate_utterance_is_rejected(corpus):
    (corpus / "dup.scp").write_text(f"u1 {corpus}/u1.wav\nu1 {corpus}/u2.wav\n")
    p = fmt(corpus, "dup.scp", "out")
    assert p.returncode == 1 and "dup.scp:2: duplicate utterance 'u1' (line 1)" in p.stderr


@pytest.mark.slow
def test_killed_run_leaves_no_final_scp(corpus):
    # A run killed while a job is busy (slow pipe) must not leave wav.scp/utt2num_samples.
    (corpus / "slow.scp").write_text(f"u1 {corpus}/u1.wav\nu2 sleep 60; cat {corpus}/u2.wav |\n")
    proc = subprocess.Popen([SCRIPT, "slow.scp", "out"], cwd=corpus, env=env(), start_new_session=True,
                            stderr=subprocess.DEVNULL)  # fmt: skip
    log = corpus / "out/logs/format_wav.1.log"
    deadline = time.time() + 30
    while not (log.exists() and "1/2 utterances done" in log.read_text()) and time.time() < deadline:
        time.sleep(0.1)
    assert "1/2 utterances done" in log.read_text()
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(timeout=30)
    assert proc.returncode != 0
    assert not (corpus / "out/wav.scp").exists() and not (corpus / "out/utt2num_samples").exists()
    assert not (corpus / "out/data/format.1/wav.scp").exists(), "the job's part scp is written last too"


def test_explicit_logdir_and_audiodir_as_in_espnet(corpus):
    # ESPnet's call form: <in.scp> <outdir> [<logdir> [<audiodir>]].
    p = fmt(corpus, "in.scp", "out", "out/logs/wav", "out/data/wav")
    assert p.returncode == 0, p.stderr
    assert read_table(corpus / "out/wav.scp")["u1"] == "out/data/wav/format.1/u1.wav"
    assert (corpus / "out/logs/wav/format_wav.1.log").is_file()
