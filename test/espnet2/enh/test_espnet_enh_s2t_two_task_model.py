"""TwoTaskEnhS2TModel: per-task losses, per-utterance SE loss masking, NaN stats.

The stock ESPnetEnhS2TModel is the oracle where it is defined (a batch whose
utterances all have a reference); per-utterance behaviour is checked against the
same model called on each row alone.
"""

import copy
import math

import pytest
import torch
from conftest import make_batch, row, stock_model, tiny_args

from espnet2.enh.espnet_enh_s2t_two_task_model import (
    TwoTaskEnhS2TModel,
    utterance_category,
)

STOCK_KEYS = set(
    "loss loss_asr loss_enh loss_ctc loss_att acc cer wer cer_ctc".split()
)


def two_task(stock, asr_weight=1.0, **kw):
    model = TwoTaskEnhS2TModel.from_joint_model(stock, asr_weight=asr_weight)
    for key, value in kw.items():
        setattr(model, key, value)
    return model


def test_category_follows_espnet_suffix_convention():
    # ESPnet's enh_s2t model checks CLEAN, then REAL; anything else has a reference.
    assert utterance_category("spk1_utt3_CLEAN") == "CLEAN"
    assert utterance_category("F01_050C0101_BUS_REAL") == "REAL"
    assert utterance_category("F01_050C0101_BUS_SIMU") == "SIMU"
    assert utterance_category("011c0201") == "SIMU"


def test_rewrap_keeps_stock_state_dict_keys(tiny_stock):
    # Stock inference loads our checkpoints only if the keys are identical.
    model = two_task(tiny_stock)
    assert list(model.state_dict()) == list(tiny_stock.state_dict())


def test_total_loss_equals_stock_espnet_on_simulated_batch(tiny_stock):
    # asr_weight 1.0 must reproduce ESPnet's joint loss (enh + asr) exactly; the
    # batch has different lengths, so padding is handled the same way too.
    model = two_task(tiny_stock).eval()
    batch = make_batch([3000, 2600, 2000], ["a_SIMU", "b_SIMU", "c_SIMU"])
    with torch.no_grad():
        out = model(**copy.deepcopy(batch))
        loss, stats, weight = tiny_stock(**copy.deepcopy(batch))
    assert out["loss"].shape == loss.shape == (1,)
    assert torch.allclose(out["loss"], loss, rtol=0, atol=1e-6)
    assert torch.equal(out["weight"], weight)
    for key, value in stats.items():
        assert torch.allclose(out["stats"][key], value, rtol=0, atol=1e-6), key
    tl = out["task_losses"]
    assert tl["asr"].dim() == 0 and tl["se"].dim() == 0
    assert torch.allclose(tl["asr"] + tl["se"], out["loss"][0], rtol=0, atol=1e-6)
    assert torch.allclose(tl["se"], stats["loss_enh"][0], rtol=0, atol=1e-6)


def test_asr_weight_scales_only_the_asr_loss(tiny_stock):
    # Paper weighting: total = 0.7 * L_ASR + (wrapper weight 0.3) * L_SE.
    model = two_task(tiny_stock, asr_weight=0.7).eval()
    batch = make_batch([2400, 2400], ["a_SIMU", "b_SIMU"], seed=1)
    with torch.no_grad():
        out = model(**copy.deepcopy(batch))
        _, stats, _ = tiny_stock(**copy.deepcopy(batch))
    expected = 0.7 * stats["loss_asr"] + stats["loss_enh"]
    assert torch.allclose(out["loss"], expected, rtol=1e-6, atol=1e-6)
    assert torch.allclose(out["stats"]["loss_asr"], 0.7 * stats["loss_asr"], rtol=1e-6)


def test_se_loss_is_sum_over_reference_rows_divided_by_batch_size(tiny_stock):
    # [SIMU, REAL, SIMU, CLEAN]: only rows 0 and 2 have a reference, and the
    # batch SE loss must be (l_0 + l_2) / 4 (so that micro-batches combine into
    # a per-utterance average where REAL/CLEAN count zero). Equal lengths, so a
    # row alone is padded exactly as in the batch.
    model = two_task(tiny_stock).eval()
    ids = ["u0_SIMU", "u1_REAL", "u2_SIMU", "u3_CLEAN"]
    batch = make_batch([2000] * 4, ids, seed=2)
    with torch.no_grad():
        se = model(**copy.deepcopy(batch))["task_losses"]["se"]
        per_row = [
            model(**row(batch, i, f"r{i}_SIMU"))["task_losses"]["se"]
            for i in range(4)
        ]
    expected = (per_row[0] + per_row[2]) / 4
    assert torch.allclose(se, expected, rtol=1e-5, atol=1e-6)
    # ...and not the mean over the reference rows, nor over all rows.
    assert not torch.allclose(se, (per_row[0] + per_row[2]) / 2, rtol=1e-3)
    assert not torch.allclose(se, sum(per_row) / 4, rtol=1e-3)


def test_rows_without_reference_get_no_se_gradient(tiny_stock):
    model = two_task(tiny_stock).eval()
    ids = ["u0_SIMU", "u1_REAL", "u2_SIMU", "u3_CLEAN"]
    batch = make_batch([2000] * 4, ids, seed=3)
    speech = batch["speech"].clone().requires_grad_(True)
    batch["speech"] = speech
    se = model(**batch)["task_losses"]["se"]
    (grad,) = torch.autograd.grad(se, speech)
    assert grad[0].abs().sum() > 0 and grad[2].abs().sum() > 0
    assert torch.count_nonzero(grad[1]) == 0  # REAL
    assert torch.count_nonzero(grad[3]) == 0  # CLEAN


def _capture_asr_input(model):
    seen = {}

    def hook(_module, args):
        seen["speech"] = args[0].detach().clone()

    return seen, model.s2t_model.register_forward_pre_hook(hook)


def test_clean_rows_feed_raw_signal_and_others_the_enhanced_one(tiny_stock):
    model = two_task(tiny_stock).eval()
    batch = make_batch([2000] * 3, ["u0_SIMU", "u1_REAL", "u2_CLEAN"], seed=4)
    seen, handle = _capture_asr_input(model)
    try:
        with torch.no_grad():
            model(**copy.deepcopy(batch))
            enhanced = [
                model.enh_model.forward_enhance(
                    batch["speech"][i : i + 1], batch["speech_lengths"][i : i + 1]
                )[0][0]
                for i in range(2)
            ]
    finally:
        handle.remove()
    asr_in = seen["speech"]
    assert torch.equal(asr_in[2], batch["speech"][2])
    for i in range(2):  # SIMU and REAL rows go through the SE front-end
        assert torch.allclose(asr_in[i], enhanced[i][0], atol=1e-5)
        assert not torch.allclose(asr_in[i], batch["speech"][i], atol=1e-2)


def test_all_clean_batch_skips_the_se_front_end(tiny_stock):
    model = two_task(tiny_stock).eval()
    calls = []
    handle = model.enh_model.encoder.register_forward_hook(lambda *a: calls.append(1))
    try:
        with torch.no_grad():
            out = model(**make_batch([1600, 1600], ["a_CLEAN", "b_CLEAN"], seed=5))
    finally:
        handle.remove()
    assert calls == []
    assert math.isnan(out["stats"]["loss_enh"].item())


def test_bypass_prob_applies_per_utterance_in_training_only(tiny_stock):
    # bypass_enh_prob 1: in training every REAL row skips SE; SIMU rows never do;
    # in evaluation nothing is bypassed (ESPnet's rule, per utterance).
    model = two_task(tiny_stock, bypass_enh_prob=1.0)
    batch = make_batch([2000] * 2, ["a_SIMU", "b_REAL"], seed=6)
    seen, handle = _capture_asr_input(model)
    try:
        model.train()
        model(**copy.deepcopy(batch))
        train_in = seen["speech"]
        model.eval()
        with torch.no_grad():
            model(**copy.deepcopy(batch))
        eval_in = seen["speech"]
    finally:
        handle.remove()
        model.eval()
    assert torch.equal(train_in[1], batch["speech"][1])
    assert not torch.allclose(train_in[0], batch["speech"][0], atol=1e-2)
    assert not torch.allclose(eval_in[1], batch["speech"][1], atol=1e-2)


@pytest.mark.parametrize("training", [True, False])
def test_all_real_batch_reports_nan_enh_loss_and_zero_se(tiny_stock, training):
    model = two_task(tiny_stock).train(training)
    out = model(**make_batch([2000, 1800], ["a_REAL", "b_REAL"], seed=7))
    model.eval()
    stats = out["stats"]
    assert all(v is not None for v in stats.values())
    assert math.isnan(stats["loss_enh"].item())
    se = out["task_losses"]["se"]
    assert se.dim() == 0 and se.item() == 0.0
    # Documented contract: a zero with a grad_fn that reaches no parameter.
    assert se.grad_fn is not None
    grads = torch.autograd.grad(
        se, [p for _, p in model.shared_parameters()], allow_unused=True
    )
    assert all(g is None for g in grads)
    assert torch.allclose(out["loss"][0], out["task_losses"]["asr"])


def test_stat_keys_identical_for_every_category_mix(tiny_stock):
    # Under DDP ESPnet all-gathers stats key by key: every rank must report the
    # same keys whatever its batch holds, or training deadlocks.
    model = two_task(tiny_stock).train()
    keysets = []
    mixes = (
        ["a_SIMU", "b_SIMU"],
        ["a_REAL", "b_REAL"],
        ["a_CLEAN", "b_CLEAN"],
        ["a_SIMU", "b_CLEAN"],
    )
    for ids in mixes:
        out = model(**make_batch([1600, 1600], ids, seed=8))
        assert all(v is not None for v in out["stats"].values())
        keysets.append(set(out["stats"]))
    model.eval()
    assert all(k == keysets[0] for k in keysets)
    assert STOCK_KEYS <= keysets[0]


def test_se_loss_has_no_gradient_on_asr_parameters(tiny_stock):
    model = two_task(tiny_stock).eval()
    out = model(**make_batch([2000, 1500], ["a_SIMU", "b_SIMU"], seed=9))
    names, params = zip(*model.named_parameters())
    # The two losses share the SE front-end's graph: keep it for the second grad.
    grads = torch.autograd.grad(
        out["task_losses"]["se"], params, allow_unused=True, retain_graph=True
    )
    for name, g in zip(names, grads):
        if name.startswith("s2t_model."):
            assert g is None or torch.count_nonzero(g) == 0, name
    assert any(
        g is not None and torch.count_nonzero(g) > 0
        for name, g in zip(names, grads)
        if name.startswith("enh_model.")
    )
    # The ASR loss, in contrast, reaches the SE front-end (the shared parameters).
    asr_grads = torch.autograd.grad(
        out["task_losses"]["asr"],
        [p for _, p in model.shared_parameters()],
        allow_unused=True,
    )
    assert any(g is not None and torch.count_nonzero(g) > 0 for g in asr_grads)


def test_shared_parameters_are_the_trainable_se_parameters():
    model = two_task(stock_model(tiny_args()))
    frozen = "enh_model.separator.tcn.network.1.weight"
    dict(model.named_parameters())[frozen].requires_grad_(False)
    names = [n for n, _ in model.shared_parameters()]
    expected = [
        n
        for n, p in model.named_parameters()
        if n.startswith("enh_model.") and p.requires_grad
    ]
    assert names == expected and frozen not in names and len(names) > 0


def test_missing_reference_names_the_utterance(tiny_stock):
    model = two_task(tiny_stock).eval()
    batch = make_batch([1600, 1600], ["a_REAL", "spk_b_SIMU"], seed=10)
    del batch["speech_ref1"]
    with pytest.raises(ValueError, match="spk_b_SIMU"):
        model(**batch)
    # Without rows that need it, the reference is optional.
    batch["utt_id"] = ["a_REAL", "b_CLEAN"]
    with torch.no_grad():
        model(**batch)


def test_missing_text_spk1_is_a_clear_error(tiny_stock):
    model = two_task(tiny_stock).eval()
    batch = make_batch([1600], ["a_SIMU"])
    batch["text"] = batch.pop("text_spk1")
    batch.pop("text_spk1_lengths")
    with pytest.raises(ValueError, match="text_spk1"):
        model(**batch)


@pytest.mark.parametrize("bad", [-0.1, float("nan"), float("inf")])
def test_invalid_asr_weight_is_rejected(tiny_stock, bad):
    with pytest.raises(ValueError, match="asr_weight"):
        two_task(tiny_stock, asr_weight=bad)


def test_multi_speaker_front_end_is_rejected():
    args = tiny_args()
    args.enh_separator_conf = dict(args.enh_separator_conf, num_spk=2)
    args.enh_criterions = [
        dict(name="si_snr", conf={}, wrapper="pit", wrapper_conf=dict(weight=1.0))
    ]
    with pytest.raises(ValueError, match="num_spk"):
        TwoTaskEnhS2TModel.from_joint_model(stock_model(args))


def test_blstm_magnitude_mask_front_end_with_espnet_mse_fd_loss():
    # The paper's front-end family (rnn separator, ReLU mask, frequency-domain
    # MSE), shrunk. Rows are sorted longest first as ESPnet's sampler does, and the
    # longest row is CLEAN, so the SE groups are shorter than the batch: the rnn
    # separator returns max(lengths) frames, which the model must handle.
    args = tiny_args(
        enh_separator="rnn",
        enh_separator_conf=dict(
            rnn_type="blstm", num_spk=1, nonlinear="relu", layer=1, unit=8
        ),
        enh_criterions=[
            dict(
                name="mse_fd",
                conf=dict(compute_on_mask=False),
                wrapper="fixed_order",
                wrapper_conf=dict(weight=2.0),
            )
        ],
    )
    model = two_task(stock_model(args)).eval()
    batch = make_batch([2400, 2000, 1600], ["a_CLEAN", "b_SIMU", "c_REAL"], seed=11)
    with torch.no_grad():
        se = model(**copy.deepcopy(batch))["task_losses"]["se"]
        # What ESPnet's mse_fd computes: the complex squared error between the STFT
        # of the re-synthesised enhanced waveform and the clean STFT, averaged over
        # frames and frequency bins (not the paper's magnitude error summed over F).
        n = torch.tensor([2000])
        enhanced = model.enh_model.forward_enhance(batch["speech"][1:2, :2000], n)[0][0]
        spec_pre = model.enh_model.encoder(enhanced, n)[0]
        spec_ref = model.enh_model.encoder(batch["speech_ref1"][1:2, :2000], n)[0]
        complex_mse = (spec_pre - spec_ref).abs().pow(2).mean()
        magnitude_mse = (spec_pre.abs() - spec_ref.abs()).pow(2).mean()
    assert torch.allclose(se, 2.0 * complex_mse / 3, rtol=1e-4)
    assert magnitude_mse < complex_mse  # phase-sensitive error is the larger one


def test_scaled_asr_input_gradient_gives_the_weighted_rule_in_one_backward(tiny_stock):
    """Inside scale_asr_input_gradient(w_asr), one backward of l_asr + w_se l_se
    gives the SE front-end w_asr G_ASR + w_se G_SE and the ASR back-end G_ASR
    (float64, to rounding): the identity the trainer's lagged weights rely on.
    The batch mixes SIMU (SE loss), REAL (enhanced, no SE loss) and CLEAN (raw)
    rows, so every path into the ASR branch is covered. The forward value is
    unchanged and the scale ends with the block."""
    model = two_task(copy.deepcopy(tiny_stock)).double().eval()
    batch = make_batch([2000, 1800, 1500], ["a_SIMU", "b_REAL", "c_CLEAN"], seed=4)
    batch = {k: v.double() if torch.is_floating_point(v) else v
             for k, v in batch.items() if torch.is_tensor(v)} | {"utt_id": batch["utt_id"]}
    params = [p for p in model.parameters() if p.requires_grad]
    shared = {id(p) for _, p in model.shared_parameters()}
    out = model(**batch)
    losses = out["task_losses"]
    g_asr = torch.autograd.grad(losses["asr"], params, allow_unused=True, retain_graph=True)
    g_se = torch.autograd.grad(losses["se"], params, allow_unused=True)
    w_asr, w_se = torch.tensor(0.4, dtype=torch.float64), torch.tensor(1.7, dtype=torch.float64)
    with model.scale_asr_input_gradient(w_asr):
        scaled_out = model(**batch)
    assert torch.equal(scaled_out["loss"], out["loss"])
    total = scaled_out["task_losses"]["asr"] + w_se * scaled_out["task_losses"]["se"]
    one = torch.autograd.grad(total, params, allow_unused=True)
    zero = torch.zeros((), dtype=torch.float64)
    n_shared_checked = 0
    for p, ga, gs, g1 in zip(params, g_asr, g_se, one):
        ga = zero if ga is None else ga
        gs = zero if gs is None else gs
        if id(p) in shared:
            expected = w_asr * ga + w_se * gs
            n_shared_checked += int(torch.count_nonzero(expected) > 0)
        else:
            expected = ga
        torch.testing.assert_close(g1 if g1 is not None else torch.zeros_like(p),
                                   expected * torch.ones_like(p), rtol=1e-12, atol=1e-15)
    assert n_shared_checked > 0
    assert model._asr_input_grad_scale is None
