"""EnhS2TGRTask: model building from the shipped configs, asr_weight plumbing,
and checkpoints that ESPnet's stock inference loads."""

import copy
import functools
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from espnet2.bin.asr_inference import Speech2Text
from espnet2.bin.enh_inference import SeparateSpeech
from espnet2.enh.espnet_enh_s2t_model import ESPnetEnhS2TModel
from espnet2.enh.espnet_enh_s2t_two_task_model import TwoTaskEnhS2TModel
from espnet2.tasks.enh_s2t import EnhS2TTask
from espnet2.tasks.enh_s2t_gr import EnhS2TGRTask
from espnet2.train.trainer_gradient_remedy import GradientRemedyTrainer
from espnet2.utils.yaml_no_alias_safe_dump import yaml_no_alias_safe_dump

REPO = Path(__file__).resolve().parents[3]
TUNING = REPO / "egs2/TEMPLATE/asr_with_enhancement/conf/tuning"
CONFIGS = sorted(TUNING.glob("train_enh_asr_*.yaml"))
SMALL = TUNING / "train_enh_asr_small_cpu.yaml"


def token_list(size: int):
    return ["<blank>", "<unk>"] + [f"t{i}" for i in range(size - 3)] + ["<sos/eos>"]


def parse(config: Path, *extra: str, vocab: int = 31):
    args = EnhS2TGRTask.get_parser().parse_args(["--config", str(config), *extra])
    args.token_list = token_list(vocab)
    return args


@functools.lru_cache(maxsize=None)
def built(config_name: str, vocab: int):
    """EnhS2TGRTask model of a shipped config (built once per test session)."""
    return EnhS2TGRTask.build_model(parse(TUNING / config_name, vocab=vocab))


@pytest.fixture(autouse=True, scope="module")
def _free_built_models():
    yield
    built.cache_clear()  # the paper-sized models hold ~0.5 GB


def count(model, prefix: str = "") -> int:
    return sum(p.numel() for n, p in model.named_parameters() if n.startswith(prefix))


def blstm_mask_net_params(n_freq: int, units: int, layers: int) -> int:
    """ESPnet rnn separator: BLSTM, Linear(2u -> u) (RNN.l_last), Linear(u -> F)."""
    lstm = 0
    for layer in range(layers):
        n_in = n_freq if layer == 0 else 2 * units
        lstm += 2 * (4 * units * (n_in + units) + 2 * 4 * units)
    return lstm + (2 * units * units + units) + (units * n_freq + n_freq)


def test_task_uses_the_gradient_rule_trainer():
    assert EnhS2TGRTask.trainer is GradientRemedyTrainer


def test_shipped_configs_exist():
    names = {c.name for c in CONFIGS}
    assert {
        "train_enh_asr_small_cpu.yaml",
        "train_enh_asr_convtasnet_conformer.yaml",
        "train_enh_asr_blstm_conformer.yaml",
    } <= names


@pytest.mark.parametrize("config", CONFIGS, ids=[c.stem for c in CONFIGS])
def test_config_builds_two_task_model_that_stock_task_also_builds(config):
    # Paper-sized systems use the paper's BPE 1000 vocabulary for the counts.
    vocab = 31 if "small" in config.name else 1000
    args = parse(config, vocab=vocab)
    model = built(config.name, vocab)
    assert isinstance(model, TwoTaskEnhS2TModel)
    # The shipped configs use the paper's weighting (1 - 0.3) for ASR.
    assert model.asr_weight == pytest.approx(0.7)
    assert model.enh_model.loss_wrappers[0].weight > 0
    total = count(model)
    enh, asr = count(model, "enh_model."), count(model, "s2t_model.")
    assert total == enh + asr
    print(f"{config.name}: vocab {vocab}: total {total:,} = SE {enh:,} + ASR {asr:,}")
    # Stock inference builds ESPnetEnhS2TModel from the same config.yaml.
    stock = EnhS2TTask.build_model(copy.deepcopy(args))
    assert type(stock) is ESPnetEnhS2TModel
    assert list(stock.state_dict()) == list(model.state_dict())


def test_paper_configs_share_the_asr_back_end_and_blstm_matches_its_formula():
    blstm = built("train_enh_asr_blstm_conformer.yaml", 1000)
    tasnet = built("train_enh_asr_convtasnet_conformer.yaml", 1000)
    # 257 bins (n_fft 512), 3 BLSTM layers of 896 units (the paper's SE net,
    # 47,303,681 parameters, plus ESPnet's extra projection: see the config header).
    assert count(blstm, "enh_model.") == blstm_mask_net_params(257, 896, 3)
    assert count(blstm, "s2t_model.") == count(tasnet, "s2t_model.")
    # Conformer-12 (256-d) + Transformer-6 with BPE 1000: the paper's ~44 M ASR.
    assert 43e6 < count(blstm, "s2t_model.") < 45e6


def test_small_config_trains_one_step_on_cpu():
    torch.manual_seed(0)
    model = EnhS2TGRTask.build_model(parse(SMALL)).train()
    batch_size, n = 2, 16000
    speech = torch.randn(batch_size, n)
    text = torch.randint(2, 30, (batch_size, 8))
    out = model(
        speech=speech,
        speech_lengths=torch.tensor([n, n - 4000]),
        speech_ref1=speech * 0.5,
        text_spk1=text,
        text_spk1_lengths=torch.tensor([8, 8]),
        utt_id=["a_SIMU", "b_SIMU"],
    )
    assert torch.isfinite(out["loss"]).all()
    out["loss"].sum().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert missing == []


def test_asr_weight_is_a_top_level_option_with_stock_default():
    # Default 1.0 = stock ESPnet's loss; the CLI/YAML value reaches the model.
    args = parse(SMALL)
    assert EnhS2TGRTask.get_parser().parse_args([]).asr_weight == 1.0
    args.asr_weight = 0.25
    assert EnhS2TGRTask.build_model(args).asr_weight == 0.25
    args = parse(SMALL, "--asr_weight", "0.5")
    assert EnhS2TGRTask.build_model(args).asr_weight == 0.5


def test_asr_weight_inside_model_conf_is_rejected_with_a_hint():
    args = parse(SMALL)
    args.model_conf = dict(args.model_conf, asr_weight=0.7)
    with pytest.raises(ValueError, match="top level"):
        EnhS2TGRTask.build_model(args)


def test_non_asr_subtask_series_is_rejected():
    args = parse(SMALL)
    args.subtask_series = ["enh", "st"]
    with pytest.raises(ValueError, match="enh asr"):
        EnhS2TGRTask.build_model(args)


def _save_experiment(tmp_path: Path):
    """What ESPnet's main_worker writes: config.yaml (vars(args)) and a state dict."""
    args = parse(SMALL, "--token_type", "word")
    torch.manual_seed(0)
    model = EnhS2TGRTask.build_model(args)
    config = tmp_path / "config.yaml"
    config.write_text(yaml_no_alias_safe_dump(vars(args), indent=4, sort_keys=False))
    model_file = tmp_path / "model.pth"
    torch.save(model.state_dict(), model_file)
    return config, model_file, model.state_dict()


def test_checkpoint_loads_in_stock_speech2text_and_decodes(tmp_path):
    config, model_file, saved = _save_experiment(tmp_path)
    conf = yaml.safe_load(config.read_text())
    assert conf["asr_weight"] == 0.7 and "asr_weight" not in conf["model_conf"]

    s2t = Speech2Text(
        asr_train_config=config,
        asr_model_file=model_file,
        enh_s2t_task=True,
        beam_size=2,
        ctc_weight=0.3,
        device="cpu",
    )
    assert type(s2t.asr_model) is ESPnetEnhS2TModel
    # build_model_from_file loads with strict=False: check coverage ourselves on
    # the stock model built from the same config.yaml (no missing, no unexpected).
    stock, _ = EnhS2TTask.build_model_from_file(config, None, "cpu")
    result = stock.load_state_dict(torch.load(model_file), strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    # Speech2Text's model holds the saved weights (inherite_attributes only adds
    # aliases such as decoder.* for s2t_model.decoder.*).
    loaded = s2t.asr_model.state_dict()
    assert all(torch.equal(loaded[k], saved[k]) for k in saved)

    wave = np.random.default_rng(0).standard_normal(8000).astype(np.float32)
    results = s2t(wave)
    assert len(results) == 1  # one speaker
    text, tokens, token_ids, _hyp = results[0][0]
    assert isinstance(tokens, list) and len(tokens) == len(token_ids)


def test_checkpoint_loads_in_stock_enh_inference(tmp_path):
    config, model_file, _ = _save_experiment(tmp_path)
    separate = SeparateSpeech(
        train_config=config, model_file=model_file, enh_s2t_task=True, device="cpu"
    )
    wave = np.random.default_rng(1).standard_normal((1, 8000)).astype(np.float32)
    out = separate(wave, fs=16000)
    assert len(out) == 1 and out[0].shape == (1, 8000)
