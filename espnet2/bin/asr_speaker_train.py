#!/usr/bin/env python3
"""Train an ASR model with a speaker branch (Adi et al. 2019: MT or AL).

Usage: ``python -m espnet2.bin.asr_speaker_train --config conf.yaml ...``; the
options are ESPnet's ``asr_train`` ones plus ``--speaker_branch_conf`` and the
data name ``spk_labels`` (see ``docs/speaker_branch.md``).
"""

from typing import List, Optional

from espnet2.tasks.asr_speaker import ASRSpeakerTask


def get_parser():
    """The argument parser of the task (ESPnet's ``--print_config`` uses it too)."""
    return ASRSpeakerTask.get_parser()


def main(cmd: Optional[List[str]] = None):
    r"""ASR training with a speaker branch.

    Example:
        % python -m espnet2.bin.asr_speaker_train --print_config --optim adam
        % python -m espnet2.bin.asr_speaker_train --config conf/train_asr_al_mid.yaml
    """
    ASRSpeakerTask.main(cmd=cmd)


if __name__ == "__main__":
    main()
