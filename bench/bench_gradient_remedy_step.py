#!/usr/bin/env python3
"""Benchmark: the cost of a Gradient Remedy training step against its floor.

For two joint SE + ASR models built by ``EnhS2TGRTask`` from the shipped configs,

* small: STFT + TCN front-end, Conformer 144x4, 2-block decoder; batch 8 x 2 s,
* paper-shaped: Conv-TasNet (conv 256/40/20, TCN 4x2 256/512), Conformer 256x12,
  6-block decoder, BPE-1000-sized output; batch 4 x 3 s,

it times three ways of producing the gradients of one micro-batch (no optimizer
step in any of them):

* MTL: forward, one backward of ``l_asr + l_se`` (plain multi-task learning);
* floor: MTL plus one extra backward of ``l_se`` through the SE front-end only
  (the least any method that needs G_SE and G_ASR apart can cost);
* a rule (``gr`` by default; ``--rules`` names several): :class:`GradientRemedyTrainer`'s
  own step methods (``_forward``, ``_task_gradients``, ``_apply_rule`` with that
  rule, per tensor), i.e. one backward of ``l_asr`` for all parameters +
  ``autograd.grad`` of ``l_se`` on the SE parameters + the rule;

and the time inside ``_apply_rule`` alone. ``--lagged 1 2 4 8`` adds Gradient
Remedy with lagged weights (``--gr_weights_every N``, whole vector): a cycle of
N trainer steps, the first exact (as the rule variants, one block) and N - 1 in
one backward with its weights (``_weighted_backward`` inside the model's
``scale_asr_input_gradient``); the row is the cycle's time / N, i.e. the mean
step cost of a run with that N. Repetitions are interleaved (the
variant order rotates each round) and medians are reported, after warm-up
rounds. On CPU both wall-clock and process CPU time are reported: on a shared,
oversubscribed machine wall-clock mostly measures the neighbours, while the CPU
time of this single-threaded process (OMP_NUM_THREADS=1) measures its own
work (cache and memory-bandwidth contention still leak into it). Peak memory is measured per variant in a fresh subprocess: on CPU the
growth of the resident-set high-water mark (VmHWM, reset just before at least three
steps) over the resident set before them; on CUDA the growth of
``torch.cuda.max_memory_allocated`` over the allocated memory before them.

Usage::

    OMP_NUM_THREADS=1 tools/venv/bin/python bench/bench_gradient_remedy_step.py \
        [--models small paper] [--rules gr pcgrad ...] [--lagged 1 2 4 8] \
        [--rounds 7] [--warmup 2] [--device cpu] [--skip_memory]

Targets (docs/gradient_remedy_trainer.md): GR <= 1.05 x floor, rule <= 1% of
the GR step; lagged GR at N = 4 <= 1.12 x MTL on the paper-shaped model.
Output: per model and clock, one row per variant (step seconds, step / floor,
step / MTL, seconds in the rule, rule / step).
"""

import argparse
import ctypes
import gc
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List, Sequence

import torch

REPO = Path(__file__).resolve().parents[1]
TUNING = REPO / "egs2/TEMPLATE/asr_with_enhancement/conf/tuning"
MODELS = {
    "small": dict(
        config="train_enh_asr_small_cpu.yaml", vocab=31, batch=8, seconds=2.0, tokens=30
    ),
    "paper": dict(
        config="train_enh_asr_convtasnet_conformer.yaml",
        vocab=1000,
        batch=4,
        seconds=3.0,
        tokens=15,
    ),
}
BASELINES = ("mtl", "floor")
FS = 16000


def build(name: str, device: str):
    """Model, synthetic SIMU batch and trainer options (per-tensor rules) for one model shape."""
    from espnet2.tasks.enh_s2t_gr import EnhS2TGRTask
    from espnet2.train.trainer_gradient_remedy import GradientRemedyTrainer

    spec = MODELS[name]
    config = str(TUNING / spec["config"])
    args = EnhS2TGRTask.get_parser().parse_args(
        ["--config", config, "--grad_rule", "gr", "--gr_granularity", "tensor"]
    )
    tokens = [f"t{i}" for i in range(spec["vocab"] - 3)]
    args.token_list = ["<blank>", "<unk>"] + tokens + ["<sos/eos>"]
    torch.manual_seed(0)
    model = EnhS2TGRTask.build_model(args).to(device).train()
    options = GradientRemedyTrainer.build_options(args)
    options.accum_grad = 1
    n, length, n_tok = spec["batch"], int(spec["seconds"] * FS), spec["tokens"]
    g = torch.Generator().manual_seed(0)
    clean = 0.1 * torch.randn(n, length, generator=g)
    batch = {
        "speech": (clean + 0.05 * torch.randn(n, length, generator=g)).to(device),
        "speech_lengths": torch.full((n,), length, dtype=torch.long, device=device),
        "speech_ref1": clean.to(device),
        "text_spk1": torch.randint(2, spec["vocab"] - 1, (n, n_tok), generator=g),
        "text_spk1_lengths": torch.full((n,), n_tok, dtype=torch.long, device=device),
    }
    batch = {k: v.to(device) for k, v in batch.items()}
    batch["utt_id"] = [f"u{i}_SIMU" for i in range(n)]
    return model, batch, options


def lagged_name(every: int) -> str:
    return f"lag{every}"


def step_functions(
    model,
    batch,
    options,
    rules: Sequence[str],
    sync: Callable[[], None],
    lagged: Sequence[int] = (),
) -> Dict[str, Callable]:
    """One callable per variant (MTL, floor, each rule, each lagged N); each returns
    the (wall, CPU) seconds spent in the rule (0 for MTL and the floor) and the
    number of trainer steps it took (N for a lagged cycle, else 1)."""
    import dataclasses

    from espnet2.train.gradient_rules import get_rule
    from espnet2.train.trainer_gradient_remedy import GradientRemedyTrainer as T
    from espnet2.train.trainer_gradient_remedy import LaggedWeights

    shared = [p for _, p in model.shared_parameters()]
    buffer = T._build_buffer(model, options)

    def mtl():
        model.zero_grad(set_to_none=True)
        out = model(**batch)
        (out["task_losses"]["asr"] + out["task_losses"]["se"]).backward()
        return 0.0, 0.0, 1

    def floor():
        model.zero_grad(set_to_none=True)
        out = model(**batch)
        losses = out["task_losses"]
        torch.autograd.grad(losses["se"], shared, retain_graph=True)
        (losses["asr"] + losses["se"]).backward()
        return 0.0, 0.0, 1

    def exact_step(rule, buf):
        """The trainer's exact step; returns the rule's weights and its seconds."""
        buf.install()
        losses, _, _ = T._forward(model, batch, None, options, distributed=False)
        T._task_gradients(losses, buf, None)
        sync()
        start, start_cpu = time.perf_counter(), time.process_time()
        _, weights = T._apply_rule(rule, buf)
        sync()
        return weights, time.perf_counter() - start, time.process_time() - start_cpu

    def trainer_step(rule) -> Callable:
        def step():
            _, wall, cpu = exact_step(rule, buffer)
            return wall, cpu, 1

        return step

    def lagged_cycle(every: int) -> Callable:
        vector = dataclasses.replace(options, gr_granularity="vector")
        vec_buffer = T._build_buffer(model, vector)
        rule = get_rule("gr", K=options.gr_K)

        def cycle():
            lag, wall, cpu = LaggedWeights(every), 0.0, 0.0
            for _ in range(every):
                if lag.exact_due:
                    weights, w, c = exact_step(rule, vec_buffer)
                    lag.after_step(torch.cat([weights.w_asr, weights.w_se]), True)
                    wall, cpu = wall + w, cpu + c
                else:
                    vec_buffer.install()
                    with T._asr_input_scale(model, lag.weights[0]):
                        losses, _, _ = T._forward(model, batch, None, vector, False)
                    T._weighted_backward(losses, lag.weights[1], None)
                    lag.after_step(None, True)
            return wall, cpu, every

        return cycle

    fns = {"mtl": mtl, "floor": floor, **{r: trainer_step(get_rule(r)) for r in rules}}
    fns.update({lagged_name(n): lagged_cycle(n) for n in lagged})
    return fns


def time_model(
    name: str,
    rules: Sequence[str],
    device: str,
    rounds: int,
    warmup: int,
    lagged: Sequence[int] = (),
) -> Dict[str, float]:
    """Medians of wall-clock and process CPU seconds per variant and in the rule.

    CPU time counts only this (single-threaded) process's own work, so on a
    shared, oversubscribed CPU it is the steadier of the two clocks.
    """
    model, batch, options = build(name, device)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    fns = step_functions(model, batch, options, rules, sync, lagged)
    variants = list(fns)
    samples: Dict[str, List[float]] = {}
    for r in range(warmup + rounds):
        order = variants[r % len(variants) :] + variants[: r % len(variants)]
        for variant in order:
            sync()
            start, start_cpu = time.perf_counter(), time.process_time()
            rule_wall, rule_cpu, steps = fns[variant]()
            sync()
            measured = {
                f"wall_{variant}": (time.perf_counter() - start) / steps,
                f"cpu_{variant}": (time.process_time() - start_cpu) / steps,
            }
            if variant not in BASELINES:
                measured.update(
                    {f"wall_rule_{variant}": rule_wall / steps, f"cpu_rule_{variant}": rule_cpu / steps}
                )
            if r >= warmup:
                for key, value in measured.items():
                    samples.setdefault(key, []).append(value)
    result = {key: statistics.median(values) for key, values in samples.items()}
    result["params_se"] = sum(p.numel() for _, p in model.shared_parameters())
    result["params_all"] = sum(p.numel() for p in model.parameters())
    return result


def _rss_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        return int(next(line for line in f if line.startswith(field)).split()[1])


def peak_memory_child(name: str, variant: str, device: str, steps: int) -> None:
    """Subprocess body: print the peak memory growth (MiB) over >= ``steps`` steps of one variant.

    The baseline is taken after the model and batch exist and before the variant's
    own state (e.g. GR's gradient buffer) is allocated, so gradient storage counts.
    CPU: the kernel's resident-set high-water mark is reset first (Linux
    /proc/self/clear_refs "5"), then VmHWM - VmRSS(before). It includes allocator
    slack (freed but not returned memory), so read differences, not absolutes.
    """
    model, batch, options = build(name, device)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    gc.collect()
    if device == "cuda":
        sync()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
    else:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        base = _rss_kib("VmRSS:") * 1024
    lagged = [int(variant[3:])] if variant.startswith("lag") else []
    rules = [] if variant in BASELINES or lagged else [variant]
    fn = step_functions(model, batch, options, rules, sync, lagged)[variant]
    taken = 0
    while taken < steps:  # whole cycles of a lagged variant
        taken += fn()[2]
    sync()
    if device == "cuda":
        peak = torch.cuda.max_memory_allocated()
    else:
        peak = _rss_kib("VmHWM:") * 1024
    print(json.dumps({"peak_mib": (peak - base) / 2**20}))


def peak_memory(name: str, variant: str, device: str, steps: int) -> float:
    out = subprocess.run(
        [sys.executable, __file__, "--_memory_child", name, variant]
        + ["--device", device, "--memory_steps", str(steps)],
        capture_output=True, text=True, check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])["peak_mib"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--models", nargs="+", choices=list(MODELS), default=list(MODELS)
    )
    parser.add_argument(
        "--rules", nargs="+", default=["gr"],
        help="rules of espnet2/train/gradient_rules.py to time (default options)",
    )
    parser.add_argument(
        "--lagged", nargs="*", type=int, default=[], metavar="N",
        help="also time GR with lagged weights every N steps (whole vector), e.g. 1 2 4 8",
    )
    parser.add_argument("--rounds", type=int, default=7, help="timed rounds per model")
    parser.add_argument("--warmup", type=int, default=2, help="untimed rounds first")
    default_device = "cuda" if torch.cuda.is_available() else "cpu"
    parser.add_argument("--device", default=default_device)
    parser.add_argument(
        "--skip_memory", action="store_true", help="timing only (no memory children)"
    )
    parser.add_argument("--skip_timing", action="store_true", help="peak memory only")
    parser.add_argument(
        "--memory_steps", type=int, default=3,
        help="steps per memory child (at least one whole lagged cycle); VmHWM creeps with "
        "the step count (allocator slack), so compare variants at equal counts",
    )
    parser.add_argument("--_memory_child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args._memory_child:
        peak_memory_child(*args._memory_child, device=args.device, steps=args.memory_steps)
        return
    from espnet2.train.gradient_rules import RULES

    unknown = [r for r in args.rules if r not in RULES]
    if unknown:
        parser.error(f"unknown rule(s) {unknown}; known: {sorted(RULES)}")
    rules = list(dict.fromkeys(args.rules))
    if any(n < 1 for n in args.lagged):
        parser.error(f"--lagged values must be >= 1, got {args.lagged}")
    lagged = list(dict.fromkeys(args.lagged))
    variants = list(BASELINES) + rules + [lagged_name(n) for n in lagged]

    print(
        f"device={args.device} torch={torch.__version__} "
        f"threads={torch.get_num_threads()} rounds={args.rounds} "
        f"(+{args.warmup} warm-up), medians; step = forward + gradients (+ rule), "
        "no optimizer step"
    )
    if args.skip_timing and args.skip_memory:
        parser.error("--skip_timing and --skip_memory leave nothing to measure")
    rows = {name: {} for name in args.models}
    for name in args.models:  # timing first: the model is freed before the children
        if not args.skip_timing:
            rows[name] = time_model(name, rules, args.device, args.rounds, args.warmup, lagged)
    if not args.skip_memory:
        for name in args.models:
            for variant in variants:
                rows[name][f"mem_{variant}"] = peak_memory(name, variant, args.device, args.memory_steps)
    clocks = ["wall"] if args.device == "cuda" else ["cpu", "wall"]
    for name, r in rows.items():
        if "params_se" in r:
            print(f"\n{name}: {r['params_se'] / 1e6:.2f}M SE / {r['params_all'] / 1e6:.2f}M parameters")
        else:
            print(f"\n{name}:")
        for clock in [] if args.skip_timing else clocks:
            print(
                f"{clock} clock: {'variant':<12}{'step s':>9}{'x floor':>9}{'x mtl':>9}"
                f"{'rule ms':>9}{'rule/step':>11}"
            )
            floor, mtl = r[f"{clock}_floor"], r[f"{clock}_mtl"]
            for variant in variants:
                step = r[f"{clock}_{variant}"]
                line = f"{'':<12}{variant:<12}{step:>9.3f}{step / floor:>9.3f}{step / mtl:>9.3f}"
                if variant not in BASELINES:
                    rule = r[f"{clock}_rule_{variant}"]
                    line += f"{rule * 1e3:>9.2f}{rule / step:>11.2%}"
                print(line)
        if not args.skip_memory:
            kind = "max_memory_allocated" if args.device == "cuda" else "VmHWM growth"
            print(f"peak memory MiB ({kind}): " + ", ".join(f"{v} {r[f'mem_{v}']:.0f}" for v in variants))
    print(
        "\ntargets: gr step <= 1.05 x floor, rule/step <= 1%; "
        "lag4 <= 1.12 x mtl on the paper-shaped model"
    )


if __name__ == "__main__":
    main()
