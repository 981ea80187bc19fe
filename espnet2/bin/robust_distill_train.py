#!/usr/bin/env python3
"""Train a RobustDistiller student (distillation + denoising, gradient-rule trainer).

Usage: ``python -m espnet2.bin.robust_distill_train --config conf.yaml ...``; the options
are ESPnet's common training options, ``--model_conf`` and the gradient-rule trainer's
options (``--grad_rule`` default sum, as published).
"""

from typing import List, Optional

from espnet2.tasks.robust_distill import RobustDistillTask


def get_parser():
    """The argument parser of the task (ESPnet's ``--print_config`` uses it too)."""
    return RobustDistillTask.get_parser()


def main(cmd: Optional[List[str]] = None):
    r"""RobustDistiller training.

    Example:
        % python -m espnet2.bin.robust_distill_train --print_config
        % python -m espnet2.bin.robust_distill_train --config conf/train_distill.yaml
    """
    RobustDistillTask.main(cmd=cmd)


if __name__ == "__main__":
    main()
