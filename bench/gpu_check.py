#!/usr/bin/env python3
"""GPU check: the gradient rules on CUDA with AMP, against the same computation on CPU.

Run once on a GPU machine (under 5 minutes on one H100-class card)::

    tools/venv/bin/python bench/gpu_check.py            # paper-shaped model, CUDA
    tools/venv/bin/python bench/gpu_check.py --device cpu --model small --steps 2   # dry run

Two parts, on the paper-shaped model of ``bench_gradient_remedy_step.py``
(Conv-TasNet 2.3 M + Conformer 12 x 256, batch 4 x 3 s):

1. **Rule statistics agree with the CPU.** For one fixed batch (eval mode: no
   dropout), the trainer's exact step (``_forward``, ``_task_gradients``,
   ``_apply_rule``) gives gr_cos, gr_norm_ratio and the whole-vector weights
   (w_asr, w_se) of ``gr``; on the device they are computed in float32 and under
   autocast fp16 and bf16 with a GradScaler, and compared with the CPU float32
   values: |cos difference| and |log ratio| within the tolerances below (TF32
   convolutions and half-precision activations change the gradients by a few
   per cent at most; a wrong scaling or a lost task gradient changes them by
   far more). The rules are positively homogeneous, so the loss scale must
   not matter.
2. **Training steps.** ``--steps`` optimizer steps of ``train_one_epoch`` with
   Adam under AMP (fp16 with a GradScaler, and bf16) for ``sum``, exact ``gr``
   (per tensor, the released code's choice) and lagged ``gr`` (whole vector,
   ``--gr_weights_every 4``): every reported loss must be finite and at least
   one step must have been taken. Printed: median step seconds and peak
   memory (``torch.cuda.max_memory_allocated``) and both as ratios to ``sum``.

Exit status 0 when every check passed, 1 otherwise (the failures are listed).
"""

import argparse
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_gradient_remedy_step as bench  # noqa: E402

TOL_COS = {"float32": 0.02, "float16": 0.08, "bfloat16": 0.08}
TOL_LOG_RATIO = {"float32": 0.02, "float16": 0.1, "bfloat16": 0.1}
SYSTEMS = {
    "sum": dict(grad_rule="sum", gr_granularity="tensor", gr_weights_every=1),
    "gr": dict(grad_rule="gr", gr_granularity="tensor", gr_weights_every=1),
    "gr_lag4": dict(grad_rule="gr", gr_granularity="vector", gr_weights_every=4),
}


def set_autocast_dtype(dtype: torch.dtype) -> None:
    """The trainer autocasts with ESPnet's module-level ``autocast_args`` (bf16 where
    the card supports it); set the dtype explicitly to test fp16 too."""
    from espnet2.train import trainer_gradient_remedy

    trainer_gradient_remedy.autocast_args.clear()
    trainer_gradient_remedy.autocast_args["dtype"] = dtype


def rule_stats(model_name: str, device: str, dtype: str) -> Dict[str, float]:
    """gr_cos, gr_norm_ratio, gr_w_asr, gr_w_se of one exact whole-vector gr step."""
    import dataclasses

    from espnet2.train.trainer_gradient_remedy import GR_STAT_NAMES
    from espnet2.train.trainer_gradient_remedy import GradientRemedyTrainer as T

    model, batch, options = bench.build(model_name, device)
    model.eval()
    options = dataclasses.replace(options, gr_granularity="vector")
    scaler = None
    if dtype != "float32":
        set_autocast_dtype(getattr(torch, dtype))
        options.ngpu = 1
        scaler = torch.amp.GradScaler("cuda", init_scale=2.0**10)
    buffer = T._build_buffer(model, options)
    buffer.install()
    losses, _, _ = T._forward(model, batch, scaler, options, distributed=False)
    T._task_gradients(losses, buffer, scaler)
    stats, _ = T._apply_rule(T._build_rule(options), buffer)
    values = dict(zip(GR_STAT_NAMES, stats.double().cpu().tolist()))
    buffer.close()
    return {k: values[k] for k in ("gr_cos", "gr_norm_ratio", "gr_w_asr", "gr_w_se")}


def compare_stats(ref: Dict[str, float], got: Dict[str, float], dtype: str) -> List[str]:
    """Failures (empty when within tolerance)."""
    failures = []
    if not all(math.isfinite(v) for v in got.values()):
        return [f"{dtype}: non-finite statistics {got}"]
    if abs(got["gr_cos"] - ref["gr_cos"]) > TOL_COS[dtype]:
        failures.append(f"{dtype}: gr_cos {got['gr_cos']:.4f} vs CPU {ref['gr_cos']:.4f}")
    for key in ("gr_norm_ratio", "gr_w_asr", "gr_w_se"):
        if ref[key] > 0 and got[key] > 0:
            if abs(math.log(got[key] / ref[key])) > TOL_LOG_RATIO[dtype]:
                failures.append(f"{dtype}: {key} {got[key]:.4g} vs CPU {ref[key]:.4g}")
        elif (ref[key] > 0) != (got[key] > 0):
            failures.append(f"{dtype}: {key} {got[key]:.4g} vs CPU {ref[key]:.4g}")
    return failures


def train_steps(model_name: str, device: str, system: str, dtype: str, steps: int, out: str):
    """``steps`` optimizer steps of the real trainer; (median step s, peak MiB, losses ok)."""
    from espnet2.train.distributed_utils import DistributedOption
    from espnet2.train.reporter import Reporter
    from espnet2.train.trainer_gradient_remedy import GradientRemedyTrainer as T

    model, batch, options = bench.build(model_name, device)
    for key, value in SYSTEMS[system].items():
        setattr(options, key, value)
    options.output_dir, options.ngpu = out, int(device == "cuda")
    options.use_amp = device == "cuda"
    options.log_interval = 10**9
    scaler = None
    if options.use_amp:
        set_autocast_dtype(getattr(torch, dtype))
        scaler = torch.amp.GradScaler("cuda", init_scale=2.0**10)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    utt_id, tensors = batch["utt_id"], {k: v for k, v in batch.items() if k != "utt_id"}
    times: List[float] = []

    class Timed(T):
        @classmethod
        def _report_step(cls, *args, **kwargs):
            if device == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter())
            super()._report_step(*args, **kwargs)

    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    reporter = Reporter()
    reporter.set_epoch(1)
    with reporter.observe("train") as sub:
        invalid = Timed.train_one_epoch(
            model=model, iterator=[(utt_id, dict(tensors)) for _ in range(steps)],
            optimizers=[optimizer], schedulers=[None], scaler=scaler, reporter=sub,
            summary_writer=None, options=options,
            distributed_option=DistributedOption(distributed=False),
        )
    steps_s = [b - a for a, b in zip([start] + times[:-1], times)]
    peak = torch.cuda.max_memory_allocated() / 2**20 if device == "cuda" else math.nan
    loss = reporter.get_value("train", "loss")
    ok = not invalid and math.isfinite(loss)
    return statistics.median(steps_s[1:] or steps_s), peak, ok, loss


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    parser.add_argument("--model", default="paper", choices=list(bench.MODELS))
    parser.add_argument("--steps", type=int, default=8, help="optimizer steps per system and dtype")
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        print("gpu_check.py: no CUDA device (use --device cpu for a dry run)", file=sys.stderr)
        return 1
    dtypes = ["float32", "float16", "bfloat16"] if args.device == "cuda" else ["float32"]
    if args.device == "cuda":
        print(f"device: {torch.cuda.get_device_name()} torch {torch.__version__} "
              f"bf16 supported: {torch.cuda.is_bf16_supported()}")
    failures: List[str] = []

    ref = rule_stats(args.model, "cpu", "float32")
    print(f"\n1. rule statistics of one exact gr step (whole vector), {args.model} model")
    print(f"   {'':<15}" + "".join(f"{k:>15}" for k in ref))
    print(f"   {'cpu float32':<15}" + "".join(f"{v:>15.5g}" for v in ref.values()))
    for dtype in dtypes:
        got = rule_stats(args.model, args.device, dtype)
        print(f"   {args.device + ' ' + dtype:<15}" + "".join(f"{v:>15.5g}" for v in got.values()))
        failures += compare_stats(ref, got, dtype)

    train_dtypes = ["float16", "bfloat16"] if args.device == "cuda" else ["float32"]
    print(f"\n2. {args.steps} training steps per system (median step s, peak MiB; ratio to sum)")
    with tempfile.TemporaryDirectory() as out:
        for dtype in train_dtypes:
            rows = {s: train_steps(args.model, args.device, s, dtype, args.steps, f"{out}/{dtype}_{s}")
                    for s in SYSTEMS}
            base_t, base_m = rows["sum"][0], rows["sum"][1]
            for system, (step_s, peak, ok, loss) in rows.items():
                print(f"   {dtype:<9} {system:<8} step {step_s:.4f} s ({step_s / base_t:.3f} x sum)  "
                      f"peak {peak:.0f} MiB ({peak / base_m:.3f} x sum)  loss {loss:.3f}"
                      f"{'' if ok else '  FAILED: non-finite loss or no step taken'}")
                if not ok:
                    failures.append(f"{dtype} {system}: loss {loss}, no valid step or non-finite loss")

    print("\n" + ("all checks passed" if not failures else "FAILED:\n  " + "\n  ".join(failures)))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
