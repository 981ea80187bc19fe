"""A closed command grammar (about 150 words) for the mini corpus's transcripts.

Sentences are home/robot commands of 2-10 words in upper case (as WSJ/CHiME transcripts
are), e.g. ``PUT THE SMALL RED CUP UNDER THE TABLE``, ``SET THE HEATER TO TWENTY FIVE
DEGREES``, ``CALL FOUR ONE SEVEN NINE``. A small closed vocabulary keeps a CPU model able to
learn it in minutes; the sentence space (about 10^5 sentences, from 66 for the short
STOP/START template to tens of thousands for the object templates) leaves room for dev/test
sentences that never occur in training.
"""

from __future__ import annotations

from typing import Callable, List

import numpy as np

PLACE_VERBS = ("PUT", "PLACE", "MOVE", "PUSH", "DROP", "SLIDE")
FETCH_VERBS = ("BRING", "TAKE", "FIND", "CARRY", "FETCH", "GRAB")
COLOURS = ("RED", "GREEN", "BLUE", "YELLOW", "WHITE", "BLACK", "ORANGE", "PURPLE", "PINK", "BROWN", "GREY", "SILVER")
SIZES = ("BIG", "SMALL", "LARGE", "TINY", "HEAVY", "OLD", "NEW", "ROUND")
OBJECTS = (
    "BOX", "BALL", "CUP", "BOOK", "BOTTLE", "BAG", "PEN", "PLATE", "GLASS", "SPOON",
    "KEY", "PHONE", "SHOE", "HAT", "COAT", "TOY", "CLOCK", "BASKET",
)
FURNITURE = ("TABLE", "CHAIR", "SHELF", "DESK", "BED", "SOFA", "FLOOR", "COUNTER", "CABINET", "DRAWER")
ROOMS = ("KITCHEN", "BEDROOM", "GARDEN", "HALLWAY", "OFFICE", "GARAGE", "BATHROOM", "LOUNGE", "ATTIC", "CELLAR", "PORCH")
DEVICES = ("LIGHT", "HEATER", "FAN", "RADIO", "TELEVISION", "OVEN", "ALARM", "CAMERA", "SPEAKER", "KETTLE", "PRINTER")
OPENABLES = ("DOOR", "WINDOW", "CURTAINS", "BLINDS", "GATE")
PREPOSITIONS = ("ON", "UNDER", "NEAR", "BEHIND", "BESIDE", "INTO", "ABOVE")
DIRECTIONS = ("LEFT", "RIGHT", "FORWARD", "BACK", "UP", "DOWN")
DIGITS = ("ZERO", "ONE", "TWO", "THREE", "FOUR", "FIVE", "SIX", "SEVEN", "EIGHT", "NINE")
TEENS = ("TEN", "ELEVEN", "TWELVE")
TENS = ("TWENTY", "THIRTY", "FORTY", "FIFTY", "SIXTY", "SEVENTY", "EIGHTY", "NINETY")
GENRES = ("JAZZ", "ROCK", "CLASSICAL", "FOLK")
READINGS = ("TEMPERATURE", "HUMIDITY", "TIME")
OTHER = (
    "THE", "IN", "TO", "FROM", "PERCENT", "DEGREES", "STEPS", "MUSIC", "PLEASE", "NOW",
    "TURN", "OFF", "SET", "CALL", "PLAY", "OPEN", "CLOSE", "STOP", "START", "WHAT", "IS", "HUNDRED",
)


def vocabulary() -> List[str]:
    """Every word the grammar can produce, sorted."""
    groups = (
        PLACE_VERBS, FETCH_VERBS, COLOURS, SIZES, OBJECTS, FURNITURE, ROOMS, DEVICES, OPENABLES,
        PREPOSITIONS, DIRECTIONS, DIGITS, TEENS, TENS, GENRES, READINGS, OTHER,
    )
    return sorted({w for g in groups for w in g})


def _pick(rng: np.random.Generator, words) -> str:
    return words[int(rng.integers(len(words)))]


def _number(rng: np.random.Generator) -> List[str]:
    """A number word sequence between ONE and ONE HUNDRED."""
    kind = rng.integers(4)
    if kind == 0:
        return [_pick(rng, DIGITS[1:])]
    if kind == 1:
        return [_pick(rng, TEENS)]
    if kind == 2:
        return [_pick(rng, TENS)] + ([_pick(rng, DIGITS[1:])] if rng.random() < 0.6 else [])
    return ["ONE", "HUNDRED"]


def _object(rng: np.random.Generator) -> List[str]:
    words = ["THE"]
    if rng.random() < 0.4:
        words.append(_pick(rng, SIZES))
    if rng.random() < 0.7:
        words.append(_pick(rng, COLOURS))
    return words + [_pick(rng, OBJECTS)]


def _place(rng):
    return [_pick(rng, PLACE_VERBS)] + _object(rng) + [_pick(rng, PREPOSITIONS), "THE", _pick(rng, FURNITURE)]


def _fetch(rng):
    return [_pick(rng, FETCH_VERBS)] + _object(rng) + [_pick(rng, ("TO", "FROM")), "THE", _pick(rng, ROOMS)]


def _switch(rng):
    return ["TURN", _pick(rng, ("ON", "OFF")), "THE", _pick(rng, DEVICES)] + (
        ["IN", "THE", _pick(rng, ROOMS)] if rng.random() < 0.6 else []
    )


def _set(rng):
    return ["SET", "THE", _pick(rng, DEVICES), "TO"] + _number(rng) + [_pick(rng, ("PERCENT", "DEGREES"))]


def _call(rng):
    return ["CALL"] + [_pick(rng, DIGITS) for _ in range(int(rng.integers(3, 7)))]


def _walk(rng):
    return ["MOVE"] + _number(rng) + ["STEPS", _pick(rng, DIRECTIONS)]


def _play(rng):
    return ["PLAY", _pick(rng, GENRES), "MUSIC", "IN", "THE", _pick(rng, ROOMS)]


def _open(rng):
    return [_pick(rng, ("OPEN", "CLOSE")), "THE", _pick(rng, OPENABLES)] + (
        ["IN", "THE", _pick(rng, ROOMS)] if rng.random() < 0.5 else []
    )


def _ask(rng):
    return ["WHAT", "IS", "THE", _pick(rng, READINGS), "IN", "THE", _pick(rng, ROOMS)]


def _stop(rng):
    return [_pick(rng, ("STOP", "START")), "THE", _pick(rng, DEVICES)] + (
        [_pick(rng, ("NOW", "PLEASE"))] if rng.random() < 0.5 else []
    )


_TEMPLATES: tuple[Callable[[np.random.Generator], List[str]], ...] = (
    _place, _place, _fetch, _fetch, _switch, _set, _call, _walk, _play, _open, _ask, _stop,
)


def sample_sentence(rng: np.random.Generator) -> str:
    """One sentence (upper case, single spaces); one in ten starts with PLEASE."""
    words = _TEMPLATES[int(rng.integers(len(_TEMPLATES)))](rng)
    if rng.random() < 0.1:
        words = ["PLEASE"] + words
    return " ".join(words)
