"""Noise for the mini corpus, generated in numpy from a seeded ``numpy.random.Generator``.

Every function returns float64 arrays of shape (n,) at ``FS`` = 16 kHz with unit RMS, so
that ``scale_to_snr`` alone sets the level. The four noise types stand in for the four
CHiME-4 environments (the mini corpus keeps CHiME's names; see ``NOISE_OF_ENVIRONMENT``):

=====  ==========================  =============================================================
env    noise                       how
=====  ==========================  =============================================================
BUS    bus rumble                  brown noise low-passed at 250-400 Hz + engine hum (35 Hz +/- 5 Hz
                                   wobble, 5 harmonics)
CAF    babble (cafe)               5-8 other talkers of the same split, looped from random offsets
PED    pink (pedestrian area)      1/f power spectrum
STR    street                      brown (1/f^2) traffic rumble + white hiss 10 dB below it
=====  ==========================  =============================================================
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import scipy.fft

FS = 16000
NOISE_OF_ENVIRONMENT = {
    "BUS": "bus rumble (low-passed brown noise + engine hum)",
    "CAF": "babble of 5-8 talkers",
    "PED": "pink noise",
    "STR": "brown noise + white hiss 10 dB below",
}
_F_MIN = 20.0  # Hz: coloured spectra are flat below this, so brown noise has no drifting DC


def unit_rms(x: np.ndarray) -> np.ndarray:
    rms = np.sqrt(np.mean(x * x))
    if not rms > 0:
        raise ValueError("cannot normalise a silent signal")
    return x / rms


def colored_noise(
    rng: np.random.Generator, n: int, exponent: float, lowpass_hz: Optional[Sequence[float]] = None
) -> np.ndarray:
    """Gaussian noise whose power spectrum falls as 1/f**exponent (0 white, 1 pink, 2 brown).

    Shaped in the frequency domain; ``lowpass_hz=(f_pass, f_stop)`` adds a raised-cosine
    low-pass between the two frequencies. Returns shape (n,), unit RMS.
    """
    m = scipy.fft.next_fast_len(n, real=True)
    spectrum = scipy.fft.rfft(rng.standard_normal(m))
    f = np.fft.rfftfreq(m, 1.0 / FS)
    gain = np.maximum(f, _F_MIN) ** (-exponent / 2.0)
    if lowpass_hz is not None:
        f_pass, f_stop = lowpass_hz
        ramp = np.clip((f - f_pass) / (f_stop - f_pass), 0.0, 1.0)
        gain = gain * 0.5 * (1.0 + np.cos(np.pi * ramp))
    return unit_rms(scipy.fft.irfft(spectrum * gain, m)[:n])


_TABLE_SIZE = 4096
_PHASES = 2 * np.pi * np.arange(_TABLE_SIZE) / _TABLE_SIZE
_SINE = np.sin(_PHASES)
_HUM_WAVE = sum(np.sin(k * _PHASES) / k for k in range(1, 6))  # 5 harmonics, amplitude 1/k


def _periodic(table: np.ndarray, cycles: np.ndarray) -> np.ndarray:
    """``table`` (one period) read at ``cycles`` (in periods): a fast periodic waveform."""
    return table[(cycles * _TABLE_SIZE).astype(np.int64) % _TABLE_SIZE]


def bus_noise(rng: np.random.Generator, n: int) -> np.ndarray:
    """Low rumble plus an engine hum whose fundamental wobbles around 35 Hz (+/- 5 Hz at
    0.1-0.5 Hz), with 5 harmonics of amplitude 1/k (read from a one-period table)."""
    rumble = colored_noise(rng, n, 2.0, lowpass_hz=(250.0, 400.0))
    t = np.arange(n) / FS
    f0 = 35.0 + 5.0 * _periodic(_SINE, rng.uniform(0.1, 0.5) * t + rng.uniform())
    hum = _periodic(_HUM_WAVE, np.cumsum(f0) / FS + rng.uniform())
    return unit_rms(rumble + 0.7 * unit_rms(hum))


def street_noise(rng: np.random.Generator, n: int) -> np.ndarray:
    """Brown traffic rumble with a white hiss 10 dB below it."""
    return unit_rms(colored_noise(rng, n, 2.0) + 10 ** (-10 / 20) * rng.standard_normal(n))


def babble_noise(rng: np.random.Generator, n: int, talkers: Sequence[np.ndarray]) -> np.ndarray:
    """Sum of ``talkers`` (clean utterances, each looped from a random offset to length n and
    brought to unit RMS first, so that no talker dominates)."""
    if not talkers:
        raise ValueError("babble needs at least one talker")
    out = np.zeros(n)
    for src in talkers:
        start = int(rng.integers(len(src)))
        out += unit_rms(np.resize(np.roll(src, -start), n))
    return unit_rms(out)


def scale_to_snr(speech: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """``noise`` scaled so that 10 log10(sum speech^2 / sum noise^2) = snr_db (whole utterance)."""
    p_speech = np.mean(speech * speech)
    p_noise = np.mean(noise * noise)
    return noise * np.sqrt(p_speech / (p_noise * 10 ** (snr_db / 10)))


def far_field_response(rng: np.random.Generator, length_s: float = 0.05, decay_s: float = 0.008) -> np.ndarray:
    """A short random room/microphone response: direct path + exponentially decaying Gaussian
    tail (T60 about 6.9 * decay_s). Shape (length_s * FS,), unit energy."""
    n = int(length_s * FS)
    t = np.arange(1, n) / FS
    h = np.concatenate([[1.0], 0.3 * rng.standard_normal(n - 1) * np.exp(-t / decay_s)])
    return h / np.sqrt(np.sum(h * h))
