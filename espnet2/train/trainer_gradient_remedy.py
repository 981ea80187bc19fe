"""Gradient Remedy trainer (placeholder until the Gradient Remedy core lands).

A real, importable subclass of ESPnet's ``Trainer`` so that the overlay can be
checked end to end; it does not yet change ``train_one_epoch``.
"""

from espnet2.train.trainer import Trainer


class GradientRemedyTrainer(Trainer):
    """ESPnet ``Trainer`` whose training step will apply a two-task gradient rule."""
