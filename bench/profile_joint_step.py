#!/usr/bin/env python3
"""Profile: where the time of one joint SE + ASR training step goes, per component.

For each config (a joint model built by ``EnhS2TGRTask``, as the recipes train it)
and a synthetic SIMU batch shaped like the mini recipe's training batches (16 x 2.2 s,
30 characters each by default: the means of ``dump/raw/tr05_multi_noisy``), it times
one multi-task step (forward, one backward of ``l_asr + l_se``, Adam step) split into

* forward: SE front-end (encoder, separator, decoder, SE loss), ASR feature extraction
  (STFT + log-mel), SpecAugment + normalisation, the ASR encoder's input layer
  (convolutional subsampling) and its blocks, CTC, attention decoder (with its loss);
  each measured by forward pre/post hooks on the module;
* backward: the ASR heads (CTC + decoder), the encoder blocks, the input layer, the
  feature extraction and SpecAugment, the SE front-end with its loss; each segment
  ends when autograd has produced the gradient of the tensor at the next boundary
  (tensor hooks on the encoder output, the input layer's output, the encoder input
  and the ASR front-end's input waveform), so the segments add up to the whole
  backward;
* the optimizer step (Adam, ``zero_grad(set_to_none=True)`` included).

Data loading is not in the step: the training logs report it (``iter_time`` of
ESPnet's reporter, per step) next to ``forward_time``, ``backward_time`` and
``optim_step_time``. Times are wall-clock medians over ``--rounds`` steps after
``--warmup`` steps, in milliseconds, on a CPU with ``--threads`` threads; with several
configs their steps alternate round by round.

Usage::

    tools/venv/bin/python bench/profile_joint_step.py \
        [--configs egs2/TEMPLATE/asr_with_enhancement/conf/tuning/train_enh_asr_small_cpu.yaml ...] \
        [--batch 16] [--seconds 2.2] [--tokens 30] [--vocab 29] [--threads 2] [--rounds 5]

Output: one Markdown table per config (component, ms, share of the step).
"""

import argparse
import statistics
import time
from collections import defaultdict
from pathlib import Path
from typing import Dict, List

import torch

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = (
    REPO / "egs2/TEMPLATE/asr_with_enhancement/conf/tuning/train_enh_asr_small_cpu.yaml"
)
FS = 16000
BACKWARD_SEGMENTS = (
    "backward: CTC + attention decoder",
    "backward: encoder blocks",
    "backward: encoder input layer",
    "backward: features + SpecAugment",
    "backward: SE front-end + SE loss",
)


def build(config: str, vocab: int):
    """The joint model of ``config`` (training mode) and an Adam optimizer as configured."""
    from espnet2.tasks.enh_s2t_gr import EnhS2TGRTask

    args = EnhS2TGRTask.get_parser().parse_args(["--config", config])
    args.token_list = ["<blank>", "<unk>"] + [f"t{i}" for i in range(vocab - 3)] + ["<sos/eos>"]
    torch.manual_seed(0)
    model = EnhS2TGRTask.build_model(args).train()
    optimizer = EnhS2TGRTask.build_optimizers(args, model)[0]
    return model, optimizer


def make_batch(batch: int, seconds: float, tokens: int, vocab: int) -> Dict[str, object]:
    """Synthetic SIMU batch: clean + noise waveforms ``(B, seconds * 16 kHz)``, random tokens."""
    g = torch.Generator().manual_seed(0)
    length = int(seconds * FS)
    clean = 0.1 * torch.randn(batch, length, generator=g)
    return {
        "speech": clean + 0.05 * torch.randn(batch, length, generator=g),
        "speech_lengths": torch.full((batch,), length, dtype=torch.long),
        "speech_ref1": clean,
        "text_spk1": torch.randint(2, vocab - 1, (batch, tokens), generator=g),
        "text_spk1_lengths": torch.full((batch,), tokens, dtype=torch.long),
        "utt_id": [f"u{i}_SIMU" for i in range(batch)],
    }


class StepTimer:
    """Hooks on one joint model that split a training step's wall time by component."""

    def __init__(self, model: torch.nn.Module):
        enh, asr = model.enh_model, model.s2t_model
        self.forward_modules = {
            "forward: SE encoder": enh.encoder,
            "forward: SE separator": enh.separator,
            "forward: SE decoder": enh.decoder,
            "forward: features (STFT + fbank)": asr.frontend,
            "forward: encoder blocks": asr.encoder,
            "forward: encoder input layer": asr.encoder.embed,
            "forward: CTC": asr.ctc,
            "forward: attention decoder": asr.decoder,
        }
        for name in ("specaug", "normalize"):
            if getattr(asr, name) is not None:
                self.forward_modules[f"forward: {name}"] = getattr(asr, name)
        self.times: Dict[str, float] = defaultdict(float)
        self.marks: List[float] = []
        self._start: Dict[str, float] = {}
        for name, module in self.forward_modules.items():
            module.register_forward_pre_hook(self._pre(name))
            module.register_forward_hook(self._post(name))
        # Backward boundaries: the gradient of the encoder output, of the input layer's
        # output, of the encoder input and of the ASR front-end's input waveform.
        asr.encoder.register_forward_hook(lambda m, a, out: self._boundary(out[0]))
        asr.encoder.embed.register_forward_hook(lambda m, a, out: self._boundary(
            out[0][0] if isinstance(out[0], tuple) else out[0]))
        asr.encoder.register_forward_pre_hook(lambda m, a: self._boundary(a[0]))
        asr.frontend.register_forward_pre_hook(lambda m, a: self._boundary(a[0]))

    def _pre(self, name: str):
        def hook(module, args):
            self._start[name] = time.perf_counter()

        return hook

    def _post(self, name: str):
        def hook(module, args, out):
            self.times[name] += time.perf_counter() - self._start[name]

        return hook

    def _boundary(self, tensor: torch.Tensor) -> None:
        if torch.is_grad_enabled() and tensor.requires_grad:
            tensor.register_hook(lambda grad: self.marks.append(time.perf_counter()))

    def step(self, model, optimizer, batch) -> Dict[str, float]:
        """One multi-task step; returns seconds per component (and ``step`` in all)."""
        self.times.clear()
        self.marks.clear()
        t0 = time.perf_counter()
        out = model(**batch)
        t1 = time.perf_counter()
        (out["task_losses"]["asr"] + out["task_losses"]["se"]).backward()
        t2 = time.perf_counter()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        t3 = time.perf_counter()
        if len(self.marks) != len(BACKWARD_SEGMENTS) - 1:
            raise RuntimeError(
                f"expected {len(BACKWARD_SEGMENTS) - 1} backward boundaries, saw {len(self.marks)}"
            )
        result = dict(self.times)
        # The input layer runs inside the encoder's forward: count it once.
        result["forward: encoder blocks"] -= result["forward: encoder input layer"]
        result["forward: SE loss, other"] = (t1 - t0) - sum(result.values())
        bounds = [t1] + sorted(self.marks) + [t2]
        for name, a, b in zip(BACKWARD_SEGMENTS, bounds[:-1], bounds[1:]):
            result[name] = b - a
        result["optimizer step"] = t3 - t2
        result["step"] = t3 - t0
        return result


def profile(configs: List[str], opts) -> List[Dict[str, float]]:
    """Median seconds per component for each config; the configs' steps are interleaved
    round by round, so a change of the machine's speed affects them alike."""
    batch = make_batch(opts.batch, opts.seconds, opts.tokens, opts.vocab)
    runs = []
    for config in configs:
        model, optimizer = build(config, opts.vocab)
        runs.append((model, optimizer, StepTimer(model), defaultdict(list)))
    for i in range(opts.warmup + opts.rounds):
        for model, optimizer, timer, samples in runs:
            result = timer.step(model, optimizer, batch)
            if i >= opts.warmup:
                for k, v in result.items():
                    samples[k].append(v)
    return [{k: statistics.median(v) for k, v in samples.items()} for *_, samples in runs]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--configs", nargs="+", default=[str(DEFAULT_CONFIG)])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=2.2)
    parser.add_argument("--tokens", type=int, default=30)
    parser.add_argument("--vocab", type=int, default=29, help="token list size (mini: 29 chars)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    opts = parser.parse_args()
    torch.set_num_threads(opts.threads)
    print(
        f"batch {opts.batch} x {opts.seconds} s, {opts.tokens} tokens of {opts.vocab}, "
        f"{opts.threads} thread(s), medians of {opts.rounds} steps (ms)"
    )
    for config, result in zip(opts.configs, profile(opts.configs, opts)):
        step = result.pop("step")
        print(f"\n{Path(config).name}: step {1000 * step:.0f} ms\n")
        print("| component | ms | share |\n| --- | --- | --- |")
        for name, seconds in result.items():
            print(f"| {name} | {1000 * seconds:.1f} | {100 * seconds / step:.1f} % |")


if __name__ == "__main__":
    main()
