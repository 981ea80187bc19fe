#!/usr/bin/env python3
"""Write a randomly initialised tiny teacher (``kind: tiny``) for the offline recipe.

No pretrained SSL model can be downloaded here, so the mini recipe distils from a
small wav2vec 2.0-style model with random weights (seeded): its layers are fixed,
input-dependent features, not learned speech representations. With a real teacher
use ``run.sh --teacher_kind hf --teacher_path <WavLM Base+ directory>`` instead.

    make_tiny_teacher.py --out exp/teacher/teacher.pth --seed 0 [--layers 6 --dim 128]
"""

import argparse

import torch

from espnet2.distill.teachers import TinyTeacher, save_tiny_teacher


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--layers", type=int, default=6)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--channels", type=int, default=64, help="conv channels")
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    conv = [[args.channels, 10, 5]] + [[args.channels, 3, 2]] * 4 + [[args.channels, 2, 2]] * 2
    teacher = TinyTeacher(conv_layers=conv, dim=args.dim, ffn_dim=2 * args.dim, num_heads=4,
                          num_layers=args.layers, pos_conv_kernel=16, pos_conv_groups=4)
    save_tiny_teacher(args.out, teacher)
    print(f"{args.out}: tiny random teacher, {args.layers} layers, width {args.dim}, "
          f"{sum(p.numel() for p in teacher.parameters())} parameters")


if __name__ == "__main__":
    main()
