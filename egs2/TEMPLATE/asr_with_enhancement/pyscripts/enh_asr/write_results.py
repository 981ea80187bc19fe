#!/usr/bin/env python3
"""Write RESULTS.md for one or more joint SE + ASR experiments (stage 16 of enh_asr.sh).

For each experiment directory (``exp/enh_asr_<tag>``) it gathers:

* ASR scores: ``<exp>/<inference_tag>/<test_set>/score_{wer,cer,ter}/result.txt`` (sclite reports; the
  ``Sum/Avg`` line gives ESPnet's ``|dataset|Snt|Wrd|Corr|Sub|Del|Ins|Err|S.Err|`` row) and the per-group
  scores under ``score_*/by_<group>/<value>/``;
* SE scores: the means ``result_<metric>.txt`` of the enhanced output (``<exp>/enhanced_<set>/scoring_enh``)
  and of the noisy input (``<dumpdir>/<set>/scoring_enh``), both against the clean reference ``spk1.scp``;
* the system: gradient rule, config, model file, parameter count, epochs and training wall time.

The tables follow ESPnet's ``show_asr_result.sh``; a summary table puts the systems side by side.
"""

import argparse
import datetime
import re
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Optional

TEMPLATE_DIR = Path(__file__).resolve().parents[2]
if str(TEMPLATE_DIR) not in sys.path:
    sys.path.insert(0, str(TEMPLATE_DIR))

from pyscripts.scoring.score_asr import ScoringError, sum_avg_row  # noqa: E402
from pyscripts.utils.table_file import atomic_writer  # noqa: E402

SCORE_TYPES = ("wer", "cer", "ter")
ASR_COLUMNS = ("Snt", "Wrd", "Corr", "Sub", "Del", "Ins", "Err", "S.Err")


def parse_sclite_sum(result_txt: Path) -> Dict[str, str]:
    """The ``Sum/Avg`` row of an sclite report (sclite's or the built-in scorer's) as ``{column: value}``."""
    try:
        cells = sum_avg_row(result_txt.read_text(encoding="utf-8"))
    except ScoringError as e:
        raise ValueError(f"{result_txt}: {e}") from None
    if len(cells) != len(ASR_COLUMNS):
        raise ValueError(f"{result_txt}: the Sum/Avg row has {len(cells)} values, expected {len(ASR_COLUMNS)}")
    return dict(zip(ASR_COLUMNS, cells))


def read_number(path: Path) -> Optional[float]:
    try:
        return float(path.read_text(encoding="utf-8").split()[0])
    except (OSError, IndexError, ValueError):
        return None


def load_config(exp: Path) -> dict:
    import yaml

    path = exp / "config.yaml"
    if not path.exists():
        return {}
    with path.open(encoding="utf-8") as f:
        return yaml.safe_load(f) or {}


def train_log_facts(exp: Path) -> Dict[str, str]:
    """Parameter count and the last epoch, from ESPnet's train.log."""
    facts: Dict[str, str] = {}
    log = exp / "train.log"
    if not log.exists():
        return facts
    text = log.read_text(encoding="utf-8", errors="replace")
    m = re.search(r"Total Number of model parameters:\s*([0-9.]+\s*[KMG]?)", text)
    if m:
        facts["params"] = m.group(1).replace(" ", "")
    epochs = re.findall(r"(\d+)epoch results:", text)
    if epochs:
        facts["epochs"] = epochs[-1]
    return facts


def wall_time(exp: Path) -> str:
    """Sum of the training attempts' wall times (``train_wall_time_s``: one line per attempt)."""
    path = exp / "train_wall_time_s"
    if not path.exists():
        return "-"
    seconds = sum(int(x) for x in path.read_text(encoding="utf-8").split())
    return f"{seconds // 60}m{seconds % 60:02d}s"


def fmt(x: Optional[float]) -> str:
    return "-" if x is None else f"{x:.2f}"


def asr_rows(exp: Path, test_sets: List[str], score_type: str) -> List[str]:
    rows = []
    for result in sorted(exp.glob(f"*/*/score_{score_type}/result.txt")):
        dset = result.parent.parent.name
        if dset not in test_sets:
            continue
        s = parse_sclite_sum(result)
        rows.append(f"|{result.parent.parent.parent.name}/{dset}|" + "|".join(s[c] for c in ASR_COLUMNS) + "|")
    return rows


def group_rows(exp: Path, test_sets: List[str], score_type: str) -> Dict[str, List[str]]:
    out: Dict[str, List[str]] = {}
    for result in sorted(exp.glob(f"*/*/score_{score_type}/by_*/*/result.txt")):
        value_dir = result.parent
        group = value_dir.parent.name[len("by_"):]
        dset = value_dir.parent.parent.parent.name
        if dset not in test_sets:
            continue
        s = parse_sclite_sum(result)
        out.setdefault(group, []).append(
            f"|{dset}/{group}={value_dir.name}|" + "|".join(s[c] for c in ASR_COLUMNS) + "|"
        )
    return out


METRIC_UNITS = {"STOI": "STOI (%)", "ESTOI": "ESTOI (%)", "SI_SNR": "SI_SNR (dB)", "SDR": "SDR (dB)"}


def se_table(exps: List[Path], dumpdir: Path, test_sets: List[str], metrics: List[str]) -> List[str]:
    """One row for the noisy input of each test set, then one per system for its enhanced output."""
    rows = []
    for dset in test_sets:
        inputs = [("noisy input", dumpdir / dset / "scoring_enh")]
        inputs += [(f"{exp.name} enhanced", exp / f"enhanced_{dset}" / "scoring_enh") for exp in exps]
        for name, d in inputs:
            if not d.is_dir():
                continue
            values = [read_number(d / f"result_{m.lower()}.txt") for m in metrics]
            rows.append(f"|{dset}|{name}|" + "|".join(fmt(v) for v in values) + "|")
    if not rows:
        return []
    head = "|dataset|input|" + "|".join(METRIC_UNITS.get(m, m) for m in metrics) + "|"
    return [head, "|---" * (len(metrics) + 2) + "|"] + rows


def main_wer(exp: Path, inference_tag: str, dset: str) -> Optional[str]:
    """The WER (%) of ``dset`` decoded with ``inference_tag``; None if it was not scored."""
    result = exp / inference_tag / dset / "score_wer" / "result.txt"
    return parse_sclite_sum(result)["Err"] if result.exists() else None


def render(
    exps: List[Path], dumpdir: Path, test_sets: List[str], metrics: List[str], inference_tag: str, model: str
) -> str:
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    lines = [
        "<!-- Generated by enh_asr.sh stage 16 (pyscripts/enh_asr/write_results.py) -->",
        "# RESULTS",
        "## Environments",
        f"- date: `{now}`",
        f"- python version: `{sys.version.split()[0]}`",
    ]
    for name in ("espnet", "torch"):
        try:
            from importlib.metadata import version

            lines.append(f"- {name} version: `{name} {version(name)}`")
        except Exception:  # noqa: BLE001  (a missing package only drops its line)
            pass
    try:
        githash = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        lines.append(f"- Git hash: `{githash}`")
    except (OSError, subprocess.CalledProcessError):
        pass

    lines += ["", "## Systems", "", f"WER (%) of `{inference_tag}`.", "",
              "|system|grad_rule|config|model|params|epochs|train wall time|" + "".join(
        f"WER {d}|" for d in test_sets), "|---" * (7 + len(test_sets)) + "|"]
    for exp in exps:
        conf = load_config(exp)
        facts = train_log_facts(exp)
        lines.append(
            f"|{exp.name}|{conf.get('grad_rule', '-')}|{conf.get('config', '-')}|"
            f"{model}|{facts.get('params', '-')}|{facts.get('epochs', '-')}|{wall_time(exp)}|"
            + "".join(f"{main_wer(exp, inference_tag, d) or '-'}|" for d in test_sets)
        )

    for exp in exps:
        lines += ["", f"## {exp}"]
        for score_type in SCORE_TYPES:
            rows = asr_rows(exp, test_sets, score_type)
            if not rows:
                continue
            lines += [f"### {score_type.upper()}", "", "|dataset|" + "|".join(ASR_COLUMNS) + "|",
                      "|---" * (len(ASR_COLUMNS) + 1) + "|"] + rows + [""]
            for group, grows in group_rows(exp, test_sets, score_type).items():
                lines += [f"### {score_type.upper()} by {group}", "", "|dataset|" + "|".join(ASR_COLUMNS) + "|",
                          "|---" * (len(ASR_COLUMNS) + 1) + "|"] + grows + [""]
    se = se_table(exps, dumpdir, test_sets, metrics)
    if se:
        lines += ["", "## Speech enhancement",
                  "Against the clean reference spk1.scp; REAL utterances (no true reference) are excluded.", ""] + se
    return "\n".join(lines).rstrip() + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dumpdir", type=Path, required=True, help="dump/raw: the test sets' data dirs")
    parser.add_argument("--test_sets", nargs="+", required=True)
    parser.add_argument("--se_metrics", nargs="+", default=["STOI", "ESTOI", "SI_SNR", "SDR"])
    parser.add_argument("--inference_tag", required=True, help="the decoding dir of the summary table")
    parser.add_argument("--inference_model", required=True, help="the decoded model file, e.g. valid.acc.ave.pth")
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("exps", type=Path, nargs="+", help="experiment dirs")
    args = parser.parse_args(argv)
    # An experiment dir holds ESPnet's config.yaml (the stats dir enh_asr_stats_* does not)
    exps = [Path(str(e).rstrip("/")) for e in args.exps if (Path(e) / "config.yaml").is_file()]
    try:
        text = render(exps, args.dumpdir, args.test_sets, args.se_metrics, args.inference_tag, args.inference_model)
    except (OSError, ValueError) as e:
        print(f"write_results.py: {e}", file=sys.stderr)
        return 1
    with atomic_writer(args.output) as f:
        f.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
