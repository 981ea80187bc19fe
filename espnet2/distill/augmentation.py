"""RobustDistiller's on-the-fly corruption of the student's input.

Per utterance one of four operations is drawn with equal probability, as published:
clean, additive noise, reverberation, or reverberation then noise. Noise is mixed at an
integer SNR drawn uniformly from [``snr_low``, ``snr_high``] dB (0-20 as published),
SNR = 10 log10(speech power / noise power) over the valid samples.

Sources (offline: nothing is downloaded). Noise: with probability ``p_file_noise`` a file
of ``noise_list`` (one wav path per line; MUSAN noise + UrbanSound8K as published), tiled
or cropped to length; otherwise a synthetic noise drawn uniformly from white, pink
(1/f power) and babble (the sum of the batch's other utterances; white if B = 1).
Reverberation: a file of ``rir_list`` (SLR28 as published) when given, else a synthetic
room response: a unit direct path, then Gaussian noise decaying by 60 dB over an RT60
drawn uniformly from [0.2, 0.8] s, starting 2.5 ms later. The reverberant signal is
rescaled to the dry signal's power (a loudness change is not what the student should
learn to ignore).
"""

from pathlib import Path
from typing import List, Optional

import soundfile
import torch

OPERATIONS = ("clean", "noise", "reverb", "noise+reverb")
SYNTHETIC_NOISES = ("white", "pink", "babble")


def _read_list(path: str, what: str) -> List[str]:
    files = [line.strip() for line in Path(path).read_text().splitlines() if line.strip()]
    if not files:
        raise ValueError(f"{path}: the {what} list is empty")
    return files


def _read_mono(path: str, fs: int, generator: Optional[torch.Generator]) -> torch.Tensor:
    """One random channel of a wav file, (L,) float32."""
    data, rate = soundfile.read(path, dtype="float32", always_2d=True)
    if rate != fs:
        raise ValueError(f"{path}: sampling rate {rate} Hz, expected {fs} Hz")
    if data.shape[0] == 0:
        raise ValueError(f"{path}: empty audio file")
    channel = int(torch.randint(data.shape[1], (), generator=generator))
    return torch.from_numpy(data[:, channel].copy())


def mix_at_snr(speech: torch.Tensor, noise: torch.Tensor, snr_db: float) -> torch.Tensor:
    """speech, noise (L,) -> speech + g * noise with 10 log10(P_speech / P_(g noise)) = snr_db."""
    p_speech = speech.pow(2).mean()
    p_noise = noise.pow(2).mean().clamp(min=1e-12)
    gain = torch.sqrt(p_speech / (p_noise * 10.0 ** (snr_db / 10.0)))
    return speech + gain * noise


def pink_noise(n: int, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """(n,) Gaussian noise with a 1/f power spectrum (flat below bin 1)."""
    spec = torch.fft.rfft(torch.randn(n, generator=generator))
    f = torch.arange(spec.numel(), dtype=torch.float32).clamp(min=1.0)
    return torch.fft.irfft(spec / f.sqrt(), n)


def synthetic_rir(
    fs: int, rt60: float, generator: Optional[torch.Generator] = None
) -> torch.Tensor:
    """(K,) room response: 1 at t = 0, then exponentially decaying noise (60 dB per RT60)."""
    n = int(rt60 * fs)
    delay = int(0.0025 * fs)
    t = torch.arange(n - delay, dtype=torch.float32) / fs
    tail = torch.randn(n - delay, generator=generator) * torch.exp(-6.9078 * t / rt60)
    tail = tail * 0.3 / tail.abs().max().clamp(min=1e-6)
    rir = torch.zeros(n)
    rir[0] = 1.0
    rir[delay:] = tail
    return rir


def reverberate(speech: torch.Tensor, rir: torch.Tensor) -> torch.Tensor:
    """speech (L,) convolved with rir (K,), truncated to L, rescaled to the input power."""
    n = speech.numel() + rir.numel() - 1
    wet = torch.fft.irfft(torch.fft.rfft(speech, n) * torch.fft.rfft(rir, n), n)[: speech.numel()]
    return wet * torch.sqrt(speech.pow(2).mean() / wet.pow(2).mean().clamp(min=1e-12))


class Corruptor:
    """Corrupt a batch of clean waveforms (B, L) with lengths (B,) -> (B, L), ops (B,).

    Padded samples stay zero. ``generator`` makes the draws reproducible (evaluation);
    training uses torch's global RNG, which ESPnet seeds.
    """

    def __init__(
        self,
        fs: int = 16000,
        snr_low: int = 0,
        snr_high: int = 20,
        rt60_low: float = 0.2,
        rt60_high: float = 0.8,
        noise_list: Optional[str] = None,
        rir_list: Optional[str] = None,
        p_file_noise: float = 0.7,
        operations: List[str] = list(OPERATIONS),
    ):
        if not 0 <= snr_low <= snr_high:
            raise ValueError(f"need 0 <= snr_low <= snr_high, got {snr_low}, {snr_high}")
        unknown = set(operations) - set(OPERATIONS)
        if unknown or not operations:
            raise ValueError(
                f"operations must be a non-empty subset of {OPERATIONS}, got {operations}"
            )
        self.fs = fs
        self.snr_low, self.snr_high = snr_low, snr_high
        self.rt60_low, self.rt60_high = rt60_low, rt60_high
        self.noise_files = _read_list(noise_list, "noise") if noise_list else []
        self.rir_files = _read_list(rir_list, "RIR") if rir_list else []
        self.p_file_noise = p_file_noise
        self.operations = list(operations)

    def _uniform(self, low: float, high: float, generator) -> float:
        return low + (high - low) * torch.rand((), generator=generator).item()

    def _noise(self, batch: torch.Tensor, lengths: torch.Tensor, i: int, generator) -> torch.Tensor:
        n = int(lengths[i])
        if self.noise_files and torch.rand((), generator=generator).item() < self.p_file_noise:
            k = int(torch.randint(len(self.noise_files), (), generator=generator))
            noise = _read_mono(self.noise_files[k], self.fs, generator)
            reps = -(-n // noise.numel())
            start = int(torch.randint(noise.numel() * reps - n + 1, (), generator=generator))
            return noise.repeat(reps)[start : start + n]
        kind = SYNTHETIC_NOISES[int(torch.randint(3, (), generator=generator))]
        if kind == "babble" and batch.size(0) > 1:
            others = [j for j in range(batch.size(0)) if j != i]
            babble = torch.zeros(n)
            for j in others:
                src = batch[j, : int(lengths[j])].detach().cpu()
                babble += src.repeat(-(-n // max(src.numel(), 1)))[:n]
            if babble.pow(2).sum() > 0:
                return babble
        if kind == "pink":
            return pink_noise(n, generator)
        return torch.randn(n, generator=generator)

    def _rir(self, generator) -> torch.Tensor:
        if self.rir_files:
            k = int(torch.randint(len(self.rir_files), (), generator=generator))
            return _read_mono(self.rir_files[k], self.fs, generator)
        return synthetic_rir(
            self.fs, self._uniform(self.rt60_low, self.rt60_high, generator), generator
        )

    def __call__(
        self,
        wav: torch.Tensor,
        lengths: torch.Tensor,
        generator: Optional[torch.Generator] = None,
    ):
        """Returns (corrupted (B, L), op indices into ``OPERATIONS`` (B,), SNRs (B,) dB or NaN)."""
        out = wav.detach().clone()
        ops = torch.empty(wav.size(0), dtype=torch.long)
        snrs = torch.full((wav.size(0),), float("nan"))
        cpu = wav.detach().cpu().float()
        for i in range(wav.size(0)):
            n = int(lengths[i])
            op = self.operations[int(torch.randint(len(self.operations), (), generator=generator))]
            ops[i] = OPERATIONS.index(op)
            x = cpu[i, :n]
            if n == 0 or op == "clean":
                continue
            if "reverb" in op:
                x = reverberate(x, self._rir(generator))
            if "noise" in op:
                snr = int(torch.randint(self.snr_low, self.snr_high + 1, (), generator=generator))
                snrs[i] = snr
                x = mix_at_snr(x, self._noise(cpu, lengths, i, generator), snr)
            out[i, :n] = x.to(out.dtype).to(out.device)
        return out, ops, snrs
