#!/usr/bin/env python3
"""Compare gradient rules over training seeds: WER with bootstrap 95% intervals, per SNR, and cost.

Input: the experiment dirs of several systems (one per gradient rule and training seed), each
decoded and scored by ``enh_asr.sh`` (stage 14). For every dir this reads

* ``config.yaml``: the system's name and ``seed``. The name is the value of ``--name_key``
  (default ``grad_rule``): comma-separated keys, dotted for nested ones, values joined by
  ``_`` (e.g. ``speaker_branch_conf.mode,speaker_branch_conf.fork`` -> ``al_mid``); a system
  with none of them is named ``--missing_name`` when given (e.g. ``baseline``), else refused. A key
  ending in ``?`` is optional (left out of the name when absent: ``grad_rule,grad_rule_conf.w_se?``
  names ``sum`` and ``fixed_0.5``); ``--name_key dir`` names a system by its experiment dir
  instead, less a leading ``enh_asr_`` (``enh_asr_gr_vector_lag4`` -> ``gr_vector_lag4``: systems
  that differ in options no key list names well); ``--rename old=new,...`` then renames systems
  (``fixed_0=asr_only``);
* ``<inference_tag>/<test set>/score_<type>/result.txt``: the per-utterance counts sclite (or the
  built-in scorer) writes, ``id: (<spk>-<utt>)`` then ``Scores: (#C #S #D #I) c s d i``;
* ``train_wall_time_s`` (one line of seconds per training attempt, written by stage 11) and
  ``train.log`` (ESPnet's ``<n>epoch results: ... train_time=<s> ...`` lines: the mean seconds
  per training iteration of each epoch);

and from the test data dir ``utt2spk`` (to map sclite's ids back to utterances) and
``utt2condition`` (``<utt> <ENV>_<SNR>``, e.g. ``CAF_0dB``; ``--group_field 2`` groups by SNR).

Statistics (per rule; ``S`` seeds, utterances ``u`` with errors ``e_su = S+D+I`` and reference
words ``n_u``):

* WER = ``sum_su e_su / (S sum_u n_u)``: the pooled WER, equal to the mean of the per-seed
  WERs (all seeds decode the same utterances);
* 95% interval: percentile bootstrap with ``--n_boot`` replicates. A replicate resamples the
  utterances with replacement and the seeds with replacement, then recomputes the pooled WER:
  the interval covers both test-set sampling and seed-to-seed variation (with one seed it is the
  usual utterance bootstrap). Every rule must have been trained with the same seeds (a rule x
  seed grid); both resamples are shared by all rules (seed ``k`` of one rule is paired with
  seed ``k`` of another, which share the initialisation and data order), so identical systems
  get identical intervals and differences are paired;
* difference to ``--baseline`` (default ``sum``, if present): the same replicates, WER(rule) -
  WER(baseline), with its interval (an interval excluding 0 is a difference the data support);
* per group (SNR): the same, resampling the utterances within the group.

Output (written atomically): ``<out_dir>/compare_rules.md`` (markdown tables) and
``<out_dir>/compare_rules.png`` (WER per rule with its interval, overall and per group).

Example (the mini recipe's three seeds of every rule, see docs/gradient_rules.md)::

    local/compare_rules.py --data_dir dump/raw/et05_simu_isolated_1ch_track \\
        --out_dir exp/compare_rules exp_seed*/enh_asr_*
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import re
import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

RECIPE_DIR = Path(__file__).resolve().parents[1]
if str(RECIPE_DIR) not in sys.path:
    sys.path.insert(0, str(RECIPE_DIR))

from espnet2.fileio.atomic_write import atomic_path  # noqa: E402
from pyscripts.utils.table_file import TableError, read_table, write_lines_atomic  # noqa: E402

_ID = re.compile(r"^id:\s*\((.+)\)\s*$")
_SCORES = re.compile(r"^Scores:\s*\(#C #S #D #I\)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s*$")
_EPOCH = re.compile(r"\d+epoch results: .*?\btrain_time=([0-9.eE+-]+)")
_TRAIN_SECTION = re.compile(r"\d+epoch results: \[train\] (.*?)(?:, \[|$)", re.MULTILINE)
# The trainer's gradient statistics (docs/gradient_remedy_trainer.md), in table order.
GRADIENT_STATS = ("gr_conflict_rate", "gr_norm_ratio", "gr_cos", "gr_w_asr", "gr_w_se", "gr_w_drift")


class CompareError(ValueError):
    """Bad or inconsistent input; the message names the file, line or utterance."""


@dataclasses.dataclass
class System:
    """One trained and scored system (a rule and a seed).

    Attributes:
        exp: the experiment dir.
        rule: the system's name (from ``config.yaml``, see ``read_config``).
        seed: the training seed (``config.yaml[seed]``).
        errors: ``{utt: S + D + I}``.
        ref_words: ``{utt: C + S + D}``.
        wall_s: total training wall time in seconds (None when not recorded).
        iter_s: mean seconds per training iteration over the epochs (None when not logged).
        grad_stats: ``{name: mean over the epochs}`` of the trainer's per-epoch training means
            of ``GRADIENT_STATS`` (the names the log has; NaN epochs left out).
    """

    exp: Path
    rule: str
    seed: int
    errors: Dict[str, int]
    ref_words: Dict[str, int]
    wall_s: Optional[float]
    iter_s: Optional[float]
    grad_stats: Dict[str, float] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class Estimate:
    """A WER (or WER difference) in percent with its bootstrap interval."""

    value: float
    low: float
    high: float

    def cell(self, signed: bool = False) -> str:
        fmt = "{:+.2f}" if signed else "{:.2f}"
        return f"{fmt.format(self.value)} [{fmt.format(self.low)}, {fmt.format(self.high)}]"


# ----------------------------------------------------------------------------- reading


def utterance_ids(utt2spk: Path) -> Dict[str, str]:
    """``{sclite id (lower case): utt}`` for the scorer's ``<spk>-<utt>`` ids.

    sclite prints ids in lower case; two utterances whose ids differ only in case are an error.
    """
    out: Dict[str, str] = {}
    for e in read_table(utt2spk):
        sid = f"{e.value.split()[0]}-{e.key}".lower()
        if sid in out:
            raise CompareError(
                f"{utt2spk}:{e.lineno}: '{e.key}' and '{out[sid]}' give the same "
                "case-folded scorer id; sclite cannot tell them apart"
            )
        out[sid] = e.key
    return out


def read_result(path: Path, ids: Dict[str, str]) -> Tuple[Dict[str, int], Dict[str, int]]:
    """Per-utterance ``(errors, ref_words)`` from a sclite-style ``result.txt``."""
    errors: Dict[str, int] = {}
    ref_words: Dict[str, int] = {}
    utt: Optional[str] = None
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise CompareError(f"{path}: cannot read the scoring result ({exc.strerror})") from None
    for lineno, line in enumerate(lines, 1):
        m = _ID.match(line)
        if m:
            sid = m.group(1).lower()
            if sid not in ids:
                raise CompareError(f"{path}:{lineno}: utterance id '{m.group(1)}' is not in utt2spk")
            utt = ids[sid]
            if utt in errors:
                raise CompareError(f"{path}:{lineno}: utterance '{utt}' is scored twice")
            continue
        m = _SCORES.match(line)
        if m:
            if utt is None:
                raise CompareError(f"{path}:{lineno}: 'Scores:' line without a preceding 'id:' line")
            c, s, d, i = (int(x) for x in m.groups())
            errors[utt], ref_words[utt] = s + d + i, c + s + d
            utt = None
    if not errors:
        raise CompareError(f"{path}: no per-utterance 'id:'/'Scores:' lines (not a sclite -o all report?)")
    return errors, ref_words


_ABSENT = object()


def _lookup(config: dict, dotted: str) -> object:
    value: object = config
    for part in dotted.split("."):
        if not isinstance(value, dict) or part not in value:
            return _ABSENT
        value = value[part]
    return value


def read_config(exp: Path, name_key: str, missing_name: Optional[str] = None) -> Tuple[str, int]:
    """``(name, seed)`` of a system; see the module docstring for ``name_key``."""
    import yaml

    path = exp / "config.yaml"
    try:
        with path.open(encoding="utf-8") as f:
            config = yaml.safe_load(f) or {}
    except OSError:
        raise CompareError(f"{path}: missing (not an ESPnet experiment dir?)") from None
    if "seed" not in config:
        raise CompareError(f"{path}: no 'seed' entry")
    if isinstance(config["seed"], bool) or not isinstance(config["seed"], int):
        raise CompareError(f"{path}: seed must be an integer, got {config['seed']!r}")
    if name_key == "dir":
        return exp.resolve().name.removeprefix("enh_asr_"), config["seed"]
    keys = name_key.split(",")
    values = [_lookup(config, key.rstrip("?")) for key in keys]
    if all(v is _ABSENT for v in values) and missing_name is not None:
        return missing_name, config["seed"]
    absent = [key for key, v in zip(keys, values) if v is _ABSENT and not key.endswith("?")]
    if absent:
        raise CompareError(f"{path}: no '{absent[0]}' entry")
    return "_".join(str(v) for v in values if v is not _ABSENT), config["seed"]


def parse_renames(spec: str) -> Dict[str, str]:
    """``"old=new,old2=new2"`` -> ``{old: new, old2: new2}`` (``""``: no renames)."""
    renames: Dict[str, str] = {}
    for item in filter(None, spec.split(",")):
        old, sep, new = item.partition("=")
        if not sep or not old or not new:
            raise CompareError(f"--rename: expected old=new, got '{item}'")
        if old in renames:
            raise CompareError(f"--rename: '{old}' is renamed twice")
        renames[old] = new
    return renames


def training_cost(exp: Path, log_text: str) -> Tuple[Optional[float], Optional[float]]:
    """``(total wall seconds, mean seconds per iteration)`` from ``train_wall_time_s`` and the
    text of ``train.log``; None where not recorded."""
    wall = None
    path = exp / "train_wall_time_s"
    if path.exists():
        try:
            wall = float(sum(int(x) for x in path.read_text(encoding="utf-8").split()))
        except ValueError:
            raise CompareError(f"{path}: expected one integer number of seconds per line") from None
    times = [float(x) for x in _EPOCH.findall(log_text)]
    return wall, sum(times) / len(times) if times else None


def gradient_stats(log: Path, log_text: str) -> Dict[str, float]:
    """``{name: mean over epochs}`` of ``GRADIENT_STATS`` in the ``[train]`` part of ESPnet's
    ``<n>epoch results:`` lines of ``log_text``, the text of ``log`` (each an epoch's mean over its steps; epochs
    of one run have the same number of steps, so this is the mean over the run's steps).
    A resumed run logs each finished epoch once; NaN values (no step had the statistic) are
    left out; names never logged are absent."""
    values: Dict[str, List[float]] = {}
    for section in _TRAIN_SECTION.findall(log_text):
        for item in section.split(", "):
            key, sep, value = item.partition("=")
            if sep and key in GRADIENT_STATS:
                try:
                    x = float(value)
                except ValueError:
                    raise CompareError(f"{log}: {key}={value!r} is not a number") from None
                if not math.isnan(x):
                    values.setdefault(key, []).append(x)
    return {k: sum(v) / len(v) for k, v in values.items()}


def load_system(
    exp: Path,
    result: Path,
    ids: Dict[str, str],
    name_key: str,
    missing_name: Optional[str] = None,
    renames: Optional[Dict[str, str]] = None,
) -> System:
    rule, seed = read_config(exp, name_key, missing_name)
    rule = (renames or {}).get(rule, rule)
    errors, ref_words = read_result(result, ids)
    log = exp / "train.log"
    log_text = log.read_text(encoding="utf-8", errors="replace") if log.exists() else ""
    wall, iter_s = training_cost(exp, log_text)
    return System(exp, rule, seed, errors, ref_words, wall, iter_s, gradient_stats(log, log_text))


def read_groups(path: Path, field: int) -> Dict[str, str]:
    """``{utt: group}``: the ``field``-th ``_``-separated part of ``utt2condition``'s value."""
    out = {}
    for e in read_table(path):
        parts = e.value.split()[0].split("_")
        if len(parts) < field:
            raise CompareError(f"{path}:{e.lineno}: value '{e.value}' has no _-separated field {field}")
        out[e.key] = parts[field - 1]
    return out


# ----------------------------------------------------------------------------- statistics


def by_rule(systems: Sequence[System]) -> Dict[str, List[System]]:
    """Systems grouped by rule (seeds sorted); every system must score the same utterances
    with the same seeds."""
    if not systems:
        raise CompareError("no systems given")
    first = systems[0]
    utts = set(first.errors)
    for s in systems[1:]:
        if set(s.errors) != utts:
            missing = sorted(utts - set(s.errors))[:3]
            extra = sorted(set(s.errors) - utts)[:3]
            raise CompareError(
                f"{s.exp}: scores other utterances than {first.exp} "
                f"(missing e.g. {missing}, extra e.g. {extra}); compare on one test set"
            )
        if s.ref_words != first.ref_words:
            bad = next(u for u in sorted(utts) if s.ref_words[u] != first.ref_words[u])
            raise CompareError(
                f"{s.exp}: utterance '{bad}' has {s.ref_words[bad]} reference words, "
                f"{first.exp} has {first.ref_words[bad]}: different references"
            )
    out: Dict[str, List[System]] = {}
    for s in sorted(systems, key=lambda s: (s.rule, s.seed)):
        if any(o.seed == s.seed for o in out.get(s.rule, [])):
            raise CompareError(f"{s.exp}: rule '{s.rule}' has seed {s.seed} twice")
        out.setdefault(s.rule, []).append(s)
    seeds = {rule: [s.seed for s in group] for rule, group in out.items()}
    reference = next(iter(seeds))
    for rule, values in seeds.items():
        if values != seeds[reference]:
            raise CompareError(
                f"rule '{rule}' has seeds {values} but rule '{reference}' has "
                f"{seeds[reference]}: compare a full rule x seed grid"
            )
    return out


def bootstrap(
    rules: Dict[str, List[System]],
    utts: Sequence[str],
    n_boot: int,
    rng: np.random.Generator,
    baseline: Optional[str],
) -> Tuple[Dict[str, Estimate], Dict[str, Estimate]]:
    """WER per rule and WER difference to ``baseline`` (percent, 95% percentile intervals).

    Returns ``(wer, delta)``; ``delta`` is empty without a baseline among the rules.
    """
    n = np.array([rules[next(iter(rules))][0].ref_words[u] for u in utts], dtype=np.float64)
    if n.sum() == 0:
        raise CompareError(f"the {len(utts)} utterances compared have no reference words")
    # counts[b, u]: how often utterance u is drawn in replicate b; seeds[b]: the seed
    # positions drawn in replicate b. Both are shared by all rules (paired).
    counts = rng.multinomial(len(utts), np.full(len(utts), 1.0 / len(utts)), size=n_boot)
    n_seeds = len(next(iter(rules.values())))
    seeds = rng.integers(0, n_seeds, size=(n_boot, n_seeds))
    n_rep = counts @ n
    wer: Dict[str, Estimate] = {}
    replicates: Dict[str, np.ndarray] = {}
    for rule, systems in rules.items():
        e = np.array([[s.errors[u] for u in utts] for s in systems], dtype=np.float64)  # [S, U]
        e_rep = counts @ e.T  # [B, S]
        with np.errstate(invalid="ignore", divide="ignore"):
            rep = 100.0 * np.take_along_axis(e_rep, seeds, axis=1).mean(axis=1) / n_rep
        replicates[rule] = rep
        wer[rule] = Estimate(100.0 * e.sum() / (len(systems) * n.sum()), *_interval(rep))
    delta: Dict[str, Estimate] = {}
    if baseline in rules:
        for rule in rules:
            diff = replicates[rule] - replicates[baseline]
            delta[rule] = Estimate(wer[rule].value - wer[baseline].value, *_interval(diff))
    return wer, delta


def _interval(replicates: np.ndarray) -> Tuple[float, float]:
    finite = replicates[np.isfinite(replicates)]  # a replicate with no reference word
    low, high = np.percentile(finite, [2.5, 97.5])
    return float(low), float(high)


# ----------------------------------------------------------------------------- output


def _group_key(group: str) -> Tuple[float, str]:
    """Sort SNR groups numerically (``m5dB`` < ``0dB`` < ``10dB``), others by name."""
    m = re.fullmatch(r"(m?)(\d+(?:\.\d+)?)dB", group)
    if m:
        return (-float(m.group(2)) if m.group(1) else float(m.group(2)), group)
    return (math.inf, group)


def _fmt_time(seconds: Optional[float], unit: float, digits: int) -> str:
    return "-" if seconds is None else f"{seconds / unit:.{digits}f}"


def render(
    rules: Dict[str, List[System]],
    overall: Tuple[Dict[str, Estimate], Dict[str, Estimate]],
    groups: Dict[str, Dict[str, Estimate]],
    baseline: Optional[str],
    n_boot: int,
    test_set: str,
    score_type: str,
) -> List[str]:
    wer, delta = overall
    has_delta = bool(delta)
    kind = score_type.upper()
    lines = [
        f"# Systems on {test_set}: {kind} over seeds",
        "",
        f"{kind} in %, pooled over the seeds; [95% interval]: percentile bootstrap, {n_boot} "
        "replicates resampling the utterances and the seeds (the same resamples for every rule, "
        "so differences are paired).",
        "",
    ]
    header = f"| system | seeds | {kind} [95% CI] |"
    rule_line = "|---|---|---|"
    if has_delta:
        header += f" vs {baseline} [95% CI] |"
        rule_line += "---|"
    header += " train wall time (min, mean over seeds) | train_time per iteration (s) |"
    rule_line += "---|---|"
    lines += [header, rule_line]
    for rule, systems in rules.items():
        walls = [s.wall_s for s in systems if s.wall_s is not None]
        iters = [s.iter_s for s in systems if s.iter_s is not None]
        row = f"| {rule} | {','.join(str(s.seed) for s in systems)} | {wer[rule].cell()} |"
        if has_delta:
            row += f" {delta[rule].cell(signed=True)} |"
        row += f" {_fmt_time(sum(walls) / len(walls) if walls else None, 60.0, 1)} |"
        row += f" {_fmt_time(sum(iters) / len(iters) if iters else None, 1.0, 3)} |"
        lines.append(row)
    logged = [k for k in GRADIENT_STATS if any(k in s.grad_stats for g in rules.values() for s in g)]
    if logged:
        lines += [
            "",
            "## Gradient statistics (training; mean over the epochs, then over the seeds)",
            "",
            "Per-step statistics of the SE parameters' task gradients, as the trainer logs them "
            "(docs/gradient_remedy_trainer.md); '-' where a system does not log one.",
            "",
            "| system | " + " | ".join(logged) + " |",
            "|---|" + "---|" * len(logged),
        ]
        for rule, systems in rules.items():
            cells = []
            for key in logged:
                xs = [s.grad_stats[key] for s in systems if key in s.grad_stats]
                cells.append(f"{sum(xs) / len(xs):.3f}" if xs else "-")
            lines.append(f"| {rule} | " + " | ".join(cells) + " |")
    if groups:
        names = sorted(groups, key=_group_key)
        lines += ["", f"## {kind} per group (utterances resampled within the group)", ""]
        lines.append("| system | " + " | ".join(names) + " |")
        lines.append("|---|" + "---|" * len(names))
        for rule in rules:
            lines.append(f"| {rule} | " + " | ".join(groups[g][rule].cell() for g in names) + " |")
    return lines


def plot(
    path: Path,
    rules: Sequence[str],
    overall: Dict[str, Estimate],
    groups: Dict[str, Dict[str, Estimate]],
    kind: str,
) -> None:
    """WER per rule with its interval (overall and per group), saved atomically as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = [("all", overall)] + [(g, groups[g]) for g in sorted(groups, key=_group_key)]
    fig, ax = plt.subplots(figsize=(max(6.0, 1.2 * len(rules)), 4.0))
    width = 0.8 / len(series)
    for k, (label, est) in enumerate(series):
        xs = np.arange(len(rules)) - 0.4 + width * (k + 0.5)
        ys = np.array([est[r].value for r in rules])
        err = np.array([[est[r].value - est[r].low for r in rules], [est[r].high - est[r].value for r in rules]])
        ax.errorbar(xs, ys, yerr=err, fmt="o", capsize=3, label=label)
    ax.set_xticks(np.arange(len(rules)))
    ax.set_xticklabels(rules, rotation=30, ha="right")
    ax.set_ylabel(f"{kind} (%) with 95% bootstrap interval")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize="small", ncol=min(len(series), 4))
    fig.tight_layout()
    try:
        with atomic_path(path, suffix=".png") as tmp:
            fig.savefig(tmp, dpi=120)
    finally:
        plt.close(fig)


# ----------------------------------------------------------------------------- main


def compare(
    exps: Sequence[Path],
    data_dir: Path,
    out_dir: Path,
    inference_tag: str = "decode_asr",
    score_type: str = "wer",
    name_key: str = "grad_rule",
    baseline: Optional[str] = "sum",
    group_field: Optional[int] = 2,
    n_boot: int = 2000,
    seed: int = 0,
    missing_name: Optional[str] = None,
    renames: Optional[Dict[str, str]] = None,
) -> List[str]:
    """Read the systems, compute the statistics, write the table and the plot; return the table."""
    if n_boot < 100:
        raise CompareError(f"--n_boot must be >= 100 for a 95% interval, got {n_boot}")
    test_set = data_dir.name
    ids = utterance_ids(data_dir / "utt2spk")
    systems = [
        load_system(
            exp,
            exp / inference_tag / test_set / f"score_{score_type}" / "result.txt",
            ids,
            name_key,
            missing_name,
            renames,
        )
        for exp in exps
    ]
    rules = by_rule(systems)
    utts = sorted(systems[0].errors)
    rng = np.random.default_rng(seed)
    overall = bootstrap(rules, utts, n_boot, rng, baseline)
    groups: Dict[str, Dict[str, Estimate]] = {}
    if group_field is not None:
        of = read_groups(data_dir / "utt2condition", group_field)
        missing = [u for u in utts if u not in of]
        if missing:
            raise CompareError(f"{data_dir / 'utt2condition'}: no condition for utterance '{missing[0]}'")
        for g in sorted(set(of[u] for u in utts), key=_group_key):
            members = [u for u in utts if of[u] == g]
            groups[g] = bootstrap(rules, members, n_boot, rng, None)[0]
    lines = render(rules, overall, groups, baseline, n_boot, test_set, score_type)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_lines_atomic(out_dir / "compare_rules.md", lines)
    plot(out_dir / "compare_rules.png", list(rules), overall[0], groups, score_type.upper())
    return lines


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("exps", nargs="+", type=Path, help="experiment dirs (one per rule and seed)")
    parser.add_argument("--data_dir", type=Path, required=True, help="the test set's data dir (utt2spk, utt2condition)")
    parser.add_argument("--out_dir", type=Path, required=True, help="where compare_rules.{md,png} go")
    parser.add_argument("--inference_tag", default="decode_asr", help="decode dir name under each experiment")
    parser.add_argument("--score_type", default="wer", choices=["wer", "cer", "ter"])
    parser.add_argument(
        "--name_key", default="grad_rule",
        help="config.yaml key(s) naming the system: comma-separated, dotted for nested keys, "
        "a trailing '?' for an optional key; 'dir': the experiment dir's name less 'enh_asr_'",
    )
    parser.add_argument("--rename", default="", help="systems to rename: old=new[,old2=new2]")
    parser.add_argument("--missing_name", default=None, help="name of a system that has none of the keys")
    parser.add_argument("--baseline", default="sum", help="rule the differences are taken to ('none': no column)")
    parser.add_argument("--group_field", default="2", help="utt2condition field to group by (2 = SNR; 'none': no groups)")
    parser.add_argument("--n_boot", type=int, default=2000, help="bootstrap replicates")
    parser.add_argument("--seed", type=int, default=0, help="seed of the bootstrap's random generator")
    args = parser.parse_args(argv)
    try:
        field = None if args.group_field == "none" else int(args.group_field)
        if field is not None and field < 1:
            raise ValueError
    except ValueError:
        parser.error(f"--group_field must be a field number >= 1 or 'none', got '{args.group_field}'")
    try:
        lines = compare(
            args.exps, args.data_dir, args.out_dir, args.inference_tag, args.score_type, args.name_key,
            None if args.baseline == "none" else args.baseline, field, args.n_boot, args.seed, args.missing_name,
            parse_renames(args.rename),
        )  # fmt: skip
    except (CompareError, TableError) as exc:
        print(f"compare_rules.py: {exc}", file=sys.stderr)
        return 1
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
