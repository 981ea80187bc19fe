"""The speaker branch: paper architecture, padding-invariant, learns, fork presets."""

import pytest
import torch

from espnet2.layers.speaker_branch import SpeakerBranch, resolve_fork_layer, speaker_nll


def test_architecture_is_the_papers():
    # Adi et al. 4.1: one gated conv of width 5 with 200 maps and weight norm,
    # then a linear layer to the speakers.
    branch = SpeakerBranch(input_size=32, num_speakers=7)
    assert branch.conv.kernel_size == (5,)
    assert branch.conv.out_channels == 2 * 200  # GLU halves it to 200 maps
    assert torch.nn.utils.parametrize.is_parametrized(branch.conv, "weight")
    assert (branch.linear.in_features, branch.linear.out_features) == (200, 7)
    assert branch(torch.randn(2, 9, 32), torch.tensor([9, 3])).shape == (2, 7)


def test_padding_does_not_change_scores():
    # A batch mixes lengths: the scores of an utterance must not depend on what
    # lies in its padding (the conv must not read it, the pooling must skip it).
    torch.manual_seed(0)
    branch = SpeakerBranch(8, 4, channels=6, kernel_size=5)
    x = torch.randn(2, 10, 8)
    lengths = torch.tensor([10, 6])
    ref = branch(x, lengths)
    x2 = x.clone()
    x2[1, 6:] = 1e3
    assert torch.allclose(branch(x2, lengths), ref, atol=1e-6)
    # and equals the utterance scored alone without padding
    assert torch.allclose(branch(x[1:, :6], torch.tensor([6])), ref[1:], atol=1e-5)


def test_learns_speakers_from_a_speaker_offset():
    # Frames = noise + a per-speaker offset: a few Adam steps must separate them,
    # otherwise the branch could not serve as a speaker adversary or probe.
    g = torch.Generator().manual_seed(0)
    offsets = torch.randn(4, 8, generator=g)
    labels = torch.arange(4).repeat(4)
    x = torch.randn(16, 12, 8, generator=g) + offsets[labels][:, None, :]
    lengths = torch.full((16,), 12)
    torch.manual_seed(0)
    branch = SpeakerBranch(8, 4, channels=16)
    opt = torch.optim.Adam(branch.parameters(), lr=1e-2)
    for _ in range(60):
        loss, acc, _ = speaker_nll(branch(x, lengths), labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(acc) == 1.0 and loss.item() < 0.1


def test_nll_ignores_unknown_speakers():
    # Label -1 (no speaker identity) must contribute neither loss nor accuracy.
    scores = torch.tensor([[2.0, 0.0], [0.0, 5.0], [9.0, -9.0]], requires_grad=True)
    loss, acc, count = speaker_nll(scores, torch.tensor([0, -1, 0]))
    expected = torch.nn.functional.cross_entropy(scores[[0, 2]], torch.tensor([0, 0]))
    assert torch.allclose(loss, expected) and float(acc) == 1.0 and int(count) == 2
    loss.backward()
    assert torch.equal(scores.grad[1], torch.zeros(2))
    none_loss, none_acc, none_count = speaker_nll(scores, torch.tensor([-1, -1, -1]))
    assert none_loss.item() == 0.0 and int(none_count) == 0


def test_nll_rejects_out_of_range_labels():
    with pytest.raises(ValueError, match=r"in \[0, 2\) or -1"):
        speaker_nll(torch.zeros(1, 2), torch.tensor([2]))


def test_fork_presets_follow_paper_fractions():
    # The paper's 17-layer model forks after layers 2 / 8 / 15.
    assert [resolve_fork_layer(f, 17) for f in ("in", "mid", "out")] == [2, 8, 15]
    assert [resolve_fork_layer(f, 4) for f in ("IN", "mid", "out")] == [1, 2, 4]
    assert resolve_fork_layer(3, 4) == 3 and resolve_fork_layer("3", 4) == 3
    with pytest.raises(ValueError, match="outside the encoder's layers"):
        resolve_fork_layer(5, 4)
    with pytest.raises(ValueError, match="unknown fork preset"):
        resolve_fork_layer("top", 4)
