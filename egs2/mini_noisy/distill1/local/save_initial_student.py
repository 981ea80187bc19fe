#!/usr/bin/env python3
"""Save the student as it is before distillation, for the "before" rows of the results.

Builds ``RobustDistillModel`` from the distillation config (``model_conf``: the teacher
and the student architecture) exactly as training starts: the student's conv extractor,
projection, positional conv and first layers copied from the teacher (when
``init_from_teacher``). Writes its state dict (``student.*`` keys, as a training
checkpoint) atomically.

    save_initial_student.py --config conf/train_distill.yaml --teacher_path T --out exp/x/init.pth
"""

import argparse
from pathlib import Path

import torch
import yaml

from espnet2.distill.model import RobustDistillModel
from espnet2.fileio.atomic_write import atomic_path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, type=Path)
    parser.add_argument("--teacher_kind", default=None)
    parser.add_argument("--teacher_path", default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", required=True, type=Path)
    args = parser.parse_args()
    model_conf = dict(yaml.safe_load(args.config.read_text()).get("model_conf") or {})
    if args.teacher_kind:
        model_conf["teacher_kind"] = args.teacher_kind
    if args.teacher_path:
        model_conf["teacher_path"] = args.teacher_path
    torch.manual_seed(args.seed)
    model = RobustDistillModel(**model_conf)
    with atomic_path(args.out) as tmp:
        torch.save(model.state_dict(), tmp)
    print(f"{args.out}: initial student (init_from_teacher={model_conf.get('init_from_teacher', True)})")


if __name__ == "__main__":
    main()
