#!/usr/bin/env python3
"""Train a joint SE + ASR model with a two-task gradient rule.

Usage: ``python -m espnet2.bin.enh_s2t_gr_train --config conf.yaml ...``; the
options are ESPnet's ``enh_s2t_train`` ones plus ``--asr_weight`` and the
gradient-rule trainer's options (see ``--help``).
"""

from typing import List, Optional

from espnet2.tasks.enh_s2t_gr import EnhS2TGRTask


def get_parser():
    """The argument parser of the task (ESPnet's ``--print_config`` uses it too)."""
    return EnhS2TGRTask.get_parser()


def main(cmd: Optional[List[str]] = None):
    r"""Joint SE + ASR training with per-task gradients.

    Example:
        % python -m espnet2.bin.enh_s2t_gr_train --print_config --optim adam
        % python -m espnet2.bin.enh_s2t_gr_train --config conf/train.yaml
    """
    EnhS2TGRTask.main(cmd=cmd)


if __name__ == "__main__":
    main()
