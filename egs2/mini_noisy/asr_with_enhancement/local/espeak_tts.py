"""Text-to-speech with libespeak-ng through ctypes, from the ``espeakng-loader`` wheel.

The wheel ships ``libespeak-ng.so`` and its ``espeak-ng-data`` (voices, dictionaries), so no
system package or root is needed. espeak-ng is deterministic given its random seed and
its history (see ``Espeak.synthesize``). The library holds one global synthesiser per process, so
this module keeps one ``Espeak`` instance (``get_espeak``).

Voice names: a base voice (``en-us``, ``en``, ``en-gb-x-rp``, ...) optionally followed by
``+<variant>`` (``+m1``..``+m7``, ``+f1``..``+f4``). ``en-gb+<variant>`` is not found by
``espeak_SetVoiceByName`` (use ``en``); variants such as ``klatt*``, ``travis``, ``whisper``
or ``croak`` exist but sound so odd that they dominate recognition errors, so the mini corpus
does not use them.
"""

from __future__ import annotations

import ctypes
from typing import List, Optional

import numpy as np

_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_DONT_EXIT = 0x8000
_CHARS_UTF8 = 1
_POS_CHARACTER = 1
_RATE, _PITCH, _RANGE = 1, 3, 4  # espeak_PARAMETER values
_EE_OK = 0

_SynthCallback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)


class Espeak:
    """The process's espeak-ng synthesiser. ``sample_rate`` is 22050 Hz for the voices used."""

    def __init__(self) -> None:
        try:
            import espeakng_loader
        except ImportError as e:
            raise ImportError(
                "the mini corpus needs espeakng-loader (tools/requirements.txt, [synth] extra): "
                "pip install espeakng-loader"
            ) from e
        lib = ctypes.CDLL(espeakng_loader.get_library_path())
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_Info.argtypes = [ctypes.POINTER(ctypes.c_char_p)]
        lib.espeak_Info.restype = ctypes.c_char_p
        lib.espeak_SetSynthCallback.argtypes = [_SynthCallback]
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetVoiceByName.restype = ctypes.c_int
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_SetParameter.restype = ctypes.c_int
        lib.espeak_Synth.argtypes = [
            ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint,
            ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p,
        ]
        lib.espeak_Synth.restype = ctypes.c_int
        lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
        lib.espeak_ng_SetRandSeed.restype = None
        data_path = espeakng_loader.get_data_path().encode()
        self.sample_rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, data_path, _INITIALIZE_DONT_EXIT)
        if self.sample_rate <= 0:
            raise RuntimeError(f"espeak_Initialize failed with the data in {data_path.decode()}")
        self.version = lib.espeak_Info(None).decode()
        self._chunks: List[np.ndarray] = []
        self._callback = _SynthCallback(self._collect)  # kept referenced: the library calls it
        lib.espeak_SetSynthCallback(self._callback)
        self._lib = lib

    def _collect(self, wav, num_samples, _events) -> int:
        if num_samples > 0:
            self._chunks.append(np.ctypeslib.as_array(wav, (num_samples,)).copy())
        return 0  # 0 = continue synthesis

    def synthesize(
        self, text: str, voice: str, rate_wpm: int, pitch: int, pitch_range: int = 50, seed: int = 0
    ) -> np.ndarray:
        """Speak ``text``; returns int16 samples, shape (n,), at ``sample_rate``.

        Args:
            voice: e.g. ``en-us+f2``.
            rate_wpm: speed in words per minute (80-450; espeak's default 175).
            pitch: base pitch 0-99 (default 50).
            pitch_range: intonation range 0-99 (0 monotone, default 50).
            seed: seeds espeak-ng's random generator (the breath noise of variants such as
                ``+f2``/``+f3`` differs from process to process without it).

        The samples also depend on what this process synthesised before (the pitch flutter
        carries over), so call it in a fixed order from a fixed starting state for
        reproducible output (``synthesize_mini_corpus`` forks a fresh process per chunk).
        """
        if self._lib.espeak_SetVoiceByName(voice.encode()) != _EE_OK:
            raise ValueError(f"espeak-ng voice {voice!r} not found")
        for param, value in ((_RATE, rate_wpm), (_PITCH, pitch), (_RANGE, pitch_range)):
            if self._lib.espeak_SetParameter(param, int(value), 0) != _EE_OK:
                raise ValueError(f"espeak-ng rejected parameter {param}={value}")
        self._lib.espeak_ng_SetRandSeed(seed)
        self._chunks = []
        data = text.encode("utf-8")
        rc = self._lib.espeak_Synth(data, len(data) + 1, 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None)
        if rc != _EE_OK or not self._chunks:
            raise RuntimeError(f"espeak-ng failed (code {rc}) on {text!r} with voice {voice}")
        return np.concatenate(self._chunks)


_INSTANCE: Optional[Espeak] = None


def get_espeak() -> Espeak:
    """The process's single ``Espeak`` (created on first use)."""
    global _INSTANCE
    if _INSTANCE is None:
        _INSTANCE = Espeak()
    return _INSTANCE
