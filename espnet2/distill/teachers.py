"""Frozen teachers for RobustDistiller, loaded from local files only.

A teacher maps a waveform to all its hidden states. Two kinds:

* ``tiny``: :class:`TinyTeacher`, this project's small wav2vec 2.0-style model (the
  student's blocks with more layers), saved by :func:`save_tiny_teacher` as one ``.pth``
  file ``{"kind": "tiny", "config": {...}, "state_dict": {...}}``. Used by the tests and
  the mini recipe, where no pretrained model can be downloaded.
* ``hf``: a Hugging Face WavLM / HuBERT / wav2vec 2.0 checkpoint directory
  (``config.json`` + weights), e.g. WavLM Base+ as published. Needs the optional
  ``transformers`` package, imported only when such a teacher is loaded.
* ``espnet_asr`` / ``espnet_enh_s2t``: the ASR encoder of an ESPnet model trained by this
  project (an ASR model, or the ASR branch of the joint SE + ASR model): ``path`` is the
  model file (e.g. ``exp/asr/valid.acc.best.pth``) and its ``config.yaml`` lies beside it.
  The teacher is front-end + normalisation + encoder (Conformer or Transformer); its frame
  rate (e.g. 40 ms) differs from the student's, so targets are interpolated in time.

Every teacher returns ``num_layers + 1`` hidden states, index 0 being the transformer's
input and index i the output of layer i (Hugging Face's ``hidden_states`` convention),
so ``pred_layers: [4, 8, 12]`` means the same thing for every kind.
"""

import inspect
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from torch import nn

from espnet2.distill.wav2vec2_blocks import (
    WAV2VEC2_CONV_LAYERS,
    ConvFeatureExtractor,
    TransformerStack,
)
from espnet2.fileio.atomic_write import atomic_path

TEACHER_KINDS = ("tiny", "hf", "espnet_asr", "espnet_enh_s2t")
HF_MODEL_TYPES = ("wavlm", "hubert", "wav2vec2")


class Teacher(nn.Module):
    """Interface: ``forward(wav (B, L), lengths (B,)) -> (hidden states, frames (B,))``."""

    num_layers: int
    hidden_size: int
    frame_shift: Optional[int]  # samples per output frame; None: not a fixed multiple


class TinyTeacher(Teacher):
    """Conv extractor + ``num_layers`` transformer layers (defaults: 4 layers, width 64)."""

    def __init__(
        self,
        conv_layers: Sequence[Sequence[int]] = tuple((32, k, s) for _, k, s in WAV2VEC2_CONV_LAYERS),
        dim: int = 64,
        ffn_dim: int = 128,
        num_heads: int = 4,
        num_layers: int = 4,
        pos_conv_kernel: int = 16,
        pos_conv_groups: int = 4,
        dropout: float = 0.1,
    ):
        super().__init__()
        self.config = {
            "conv_layers": [list(map(int, layer)) for layer in conv_layers],
            "dim": dim,
            "ffn_dim": ffn_dim,
            "num_heads": num_heads,
            "num_layers": num_layers,
            "pos_conv_kernel": pos_conv_kernel,
            "pos_conv_groups": pos_conv_groups,
            "dropout": dropout,
        }
        self.feature_extractor = ConvFeatureExtractor(conv_layers)
        self.encoder = TransformerStack(
            self.feature_extractor.output_size,
            dim=dim,
            ffn_dim=ffn_dim,
            num_heads=num_heads,
            num_layers=num_layers,
            pos_conv_kernel=pos_conv_kernel,
            pos_conv_groups=pos_conv_groups,
            dropout=dropout,
        )
        self.num_layers = num_layers
        self.hidden_size = dim
        self.frame_shift = self.feature_extractor.total_stride

    def forward(
        self, wav: torch.Tensor, lengths: torch.Tensor
    ) -> Tuple[List[torch.Tensor], torch.Tensor]:
        feats, frames = self.feature_extractor(wav, lengths)
        return self.encoder(feats, frames), frames


class HFTeacher(Teacher):
    """A Hugging Face ``WavLMModel`` / ``HubertModel`` / ``Wav2Vec2Model`` as a teacher."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        config = model.config
        self.num_layers = int(config.num_hidden_layers)
        self.hidden_size = int(config.hidden_size)
        stride = 1
        for s in config.conv_stride:
            stride *= int(s)
        self.frame_shift = stride
        # Models with group-norm extractors (wav2vec 2.0/HuBERT/WavLM Base) were trained
        # without an attention mask on zero-padded input; only "layer" ones take one.
        self.use_attention_mask = getattr(config, "feat_extract_norm", "group") == "layer"

    def forward(
        self, wav: torch.Tensor, lengths: torch.Tensor
    ) -> Tuple[List[torch.Tensor], torch.Tensor]:
        mask = torch.arange(wav.size(1), device=wav.device)[None, :] < lengths[:, None]
        wav = wav * mask
        out = self.model(
            wav,
            attention_mask=mask.long() if self.use_attention_mask else None,
            output_hidden_states=True,
        )
        frames = self.model._get_feat_extract_output_lengths(lengths)
        return list(out.hidden_states), frames.clamp(max=out.hidden_states[0].size(1))


class ESPnetEncoderTeacher(Teacher):
    """An ESPnet ASR model's front-end + normalisation + encoder as a teacher.

    Hidden states: index 0 is the encoder's input embedding (after subsampling), index i
    the output of encoder layer i (``return_all_hs``).
    """

    def __init__(self, asr_model: nn.Module):
        super().__init__()
        encoder = asr_model.encoder
        if "return_all_hs" not in inspect.signature(encoder.forward).parameters:
            raise ValueError(
                f"{type(encoder).__name__} cannot return its hidden states (return_all_hs); "
                "use a Conformer or Transformer encoder"
            )
        self.model = asr_model
        self.num_layers = len(encoder.encoders)
        self.hidden_size = encoder.output_size()
        self.frame_shift = None

    def forward(
        self, wav: torch.Tensor, lengths: torch.Tensor
    ) -> Tuple[List[torch.Tensor], torch.Tensor]:
        embedded = []

        def keep_embedding(_module, _inputs, output):
            while isinstance(output, tuple):  # (x, mask) and/or (x, pos_emb)
                output = output[0]
            embedded.append(output)

        feats, feat_lengths = self.model._extract_feats(wav, lengths)
        if self.model.normalize is not None:
            feats, feat_lengths = self.model.normalize(feats, feat_lengths)
        hook = self.model.encoder.embed.register_forward_hook(keep_embedding)
        try:
            (_, layers), frames, _ = self.model.encoder(feats, feat_lengths, return_all_hs=True)
        finally:
            hook.remove()
        return [embedded[0]] + list(layers), frames


def save_tiny_teacher(path: str, teacher: TinyTeacher) -> None:
    """Write ``teacher`` as a ``kind: tiny`` checkpoint (atomically: temp file + rename)."""
    payload = {"kind": "tiny", "config": teacher.config, "state_dict": teacher.state_dict()}
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def _load_tiny(path: Path) -> TinyTeacher:
    if not path.is_file():
        raise FileNotFoundError(f"tiny teacher checkpoint {path} does not exist")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises several types for a corrupt or foreign file
        raise ValueError(f"{path}: not a readable torch checkpoint ({e})") from e
    if not isinstance(payload, dict) or payload.get("kind") != "tiny":
        raise ValueError(
            f"{path}: not a tiny-teacher checkpoint (expected a dict with kind 'tiny', "
            "as written by espnet2.distill.teachers.save_tiny_teacher)"
        )
    teacher = TinyTeacher(**payload["config"])
    teacher.load_state_dict(payload["state_dict"])
    return teacher


def _load_hf(path: Path) -> HFTeacher:
    if not (path / "config.json").is_file():
        raise FileNotFoundError(
            f"{path}: a Hugging Face teacher is a local directory with config.json and the "
            "weights (save_pretrained's layout); nothing is downloaded"
        )
    try:
        import transformers
    except ImportError as e:
        raise ImportError(
            f"loading the Hugging Face teacher {path} needs the optional package "
            "'transformers', which is not installed (pip install transformers)"
        ) from e
    config = transformers.AutoConfig.from_pretrained(str(path), local_files_only=True)
    if config.model_type not in HF_MODEL_TYPES:
        raise ValueError(
            f"{path}: model_type '{config.model_type}' is not a supported teacher "
            f"(one of {HF_MODEL_TYPES})"
        )
    model = transformers.AutoModel.from_pretrained(str(path), local_files_only=True)
    return HFTeacher(model)


def _load_espnet(kind: str, path: Path) -> ESPnetEncoderTeacher:
    config = path.parent / "config.yaml"
    for f in (path, config):
        if not f.is_file():
            raise FileNotFoundError(
                f"{f} does not exist (an ESPnet teacher is a model file with its training "
                "config.yaml in the same directory)"
            )
    if kind == "espnet_asr":
        from espnet2.tasks.asr import ASRTask

        model, _ = ASRTask.build_model_from_file(str(config), str(path), "cpu")
    else:
        from espnet2.tasks.enh_s2t import EnhS2TTask

        joint, _ = EnhS2TTask.build_model_from_file(str(config), str(path), "cpu")
        model = joint.s2t_model
    return ESPnetEncoderTeacher(model)


def load_teacher(kind: str, path: str) -> Teacher:
    """Load a frozen teacher (eval mode, ``requires_grad=False``) of ``kind`` from ``path``."""
    if kind not in TEACHER_KINDS:
        raise ValueError(f"teacher kind must be one of {TEACHER_KINDS}, got '{kind}'")
    if kind == "tiny":
        teacher = _load_tiny(Path(path))
    elif kind == "hf":
        teacher = _load_hf(Path(path))
    else:
        teacher = _load_espnet(kind, Path(path))
    teacher.eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher


def student_init_state(teacher: Teacher, num_student_layers: int) -> Dict[str, torch.Tensor]:
    """The teacher's weights under the student's names: conv extractor, projection,
    positional conv and the first ``num_student_layers`` transformer layers.

    Supported for ``TinyTeacher`` (same blocks as the student). Hugging Face teachers
    name and parametrise these modules differently (e.g. weight-normed positional conv,
    WavLM's gated relative position bias); their mapping is not implemented.
    """
    if not isinstance(teacher, TinyTeacher):
        raise NotImplementedError(
            f"initialising the student from a {type(teacher).__name__} is not implemented; "
            "set init_from_teacher: false (the student then starts from random weights)"
        )
    state = {}
    for name, value in teacher.state_dict().items():
        if name.startswith("encoder.layers."):
            if int(name.split(".")[2]) >= num_student_layers:
                continue
        state[name] = value
    return state
