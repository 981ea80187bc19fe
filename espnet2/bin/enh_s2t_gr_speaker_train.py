#!/usr/bin/env python3
"""Train a joint SE + ASR model (gradient rule) with a speaker branch.

Usage: ``python -m espnet2.bin.enh_s2t_gr_speaker_train --config conf.yaml ...``;
the options are those of ``enh_s2t_gr_train`` plus ``--speaker_branch_conf`` and
the data name ``spk_labels`` (see ``docs/speaker_branch.md``).
"""

from typing import List, Optional

from espnet2.tasks.enh_s2t_gr_speaker import EnhS2TGRSpeakerTask


def get_parser():
    """The argument parser of the task (ESPnet's ``--print_config`` uses it too)."""
    return EnhS2TGRSpeakerTask.get_parser()


def main(cmd: Optional[List[str]] = None):
    r"""Joint SE + ASR training with per-task gradients and a speaker branch.

    Example:
        % python -m espnet2.bin.enh_s2t_gr_speaker_train --config conf/train.yaml
    """
    EnhS2TGRSpeakerTask.main(cmd=cmd)


if __name__ == "__main__":
    main()
