"""RobustDistiller loss terms against values computed by hand."""

import math

import pytest
import torch

from espnet2.distill.losses import denoising_loss, distillation_losses, mean_frame_cosine


def test_l1_and_cosine_terms_match_hand_values_and_ignore_padding():
    # One utterance, one head, 2 valid frames + 1 padded frame of garbage.
    # frame 0: p = y = (1, 0): |p - y| = 0, cos = 1 -> -log sigmoid(1) = log(1 + e^-1)
    # frame 1: p = (0, 1), y = (1, 0): mean |p - y| = 1, cos = 0 -> -log sigmoid(0) = log 2
    preds = torch.tensor([[[[1.0, 0.0], [0.0, 1.0], [50.0, -7.0]]]])
    targets = torch.tensor([[[[1.0, 0.0], [1.0, 0.0], [0.0, 3.0]]]])
    l1, cos_term = distillation_losses(preds, targets, torch.tensor([2]))
    assert l1.shape == cos_term.shape == (1,)
    assert l1.item() == pytest.approx((0.0 + 1.0) / 2)
    assert cos_term.item() == pytest.approx((math.log(1 + math.exp(-1)) + math.log(2)) / 2)


def test_losses_are_per_head_and_frame_weighted_over_the_batch():
    # Two utterances with 1 and 3 valid frames: the mean is over the 4 valid frames,
    # so utterance 2 counts three times as much as utterance 1 (not a mean of means).
    preds = torch.zeros(2, 2, 3, 1)
    targets = torch.zeros(2, 2, 3, 1)
    targets[0, 0, 0] = 4.0  # head 0, utt 1, its single valid frame: |0 - 4| = 4
    targets[1, 1, :] = 2.0  # head 1, utt 2, all 3 frames: |0 - 2| = 2
    l1, _ = distillation_losses(preds, targets, torch.tensor([1, 3]))
    assert l1.tolist() == pytest.approx([4.0 / 4, 3 * 2.0 / 4])


def test_denoising_l1_on_masked_noisy_magnitude_matches_hand_value():
    # 2 valid STFT frames x 2 bins, 1 padded frame:
    # |0.5*2 - 1| = 0, |1*1 - 0| = 1 ; |0*3 - 1| = 1, |0.25*4 - 3| = 2 -> mean 4/4 = 1
    mask = torch.tensor([[[0.5, 1.0], [0.0, 0.25], [1.0, 1.0]]])
    noisy = torch.tensor([[[2.0, 1.0], [3.0, 4.0], [9.0, 9.0]]])
    clean = torch.tensor([[[1.0, 0.0], [1.0, 3.0], [0.0, 0.0]]])
    assert denoising_loss(mask, noisy, clean, torch.tensor([2])).item() == pytest.approx(1.0)


def test_mismatched_shapes_and_empty_batches_are_rejected():
    with pytest.raises(ValueError, match="predictions"):
        distillation_losses(torch.zeros(1, 1, 2, 3), torch.zeros(1, 1, 3, 3), torch.tensor([2]))
    with pytest.raises(ValueError, match="no valid frame"):
        distillation_losses(torch.zeros(1, 1, 2, 3), torch.zeros(1, 1, 2, 3), torch.tensor([0]))
    with pytest.raises(ValueError, match="one shape"):
        denoising_loss(torch.zeros(1, 2, 3), torch.zeros(1, 2, 3), torch.zeros(1, 3, 3), torch.tensor([2]))


def test_mean_frame_cosine_averages_valid_frames_per_utterance():
    # utt 0: frames (1,0)v(1,0) cos 1 and (1,0)v(0,1) cos 0 -> 0.5; frame 3 padded.
    a = torch.tensor([[[1.0, 0.0], [1.0, 0.0], [1.0, 0.0]]])
    b = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]]])
    assert mean_frame_cosine(a, b, torch.tensor([2])).tolist() == pytest.approx([0.5])
