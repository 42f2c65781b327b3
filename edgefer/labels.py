"""Emotion class names as other data sets and models spell them, mapped onto one canonical spelling.

FER2013's 7 classes are canonical (``angry, disgust, fear, happy, sad, surprise, neutral``); ``contempt`` is
an 8th class some data sets (CK+, AffectNet, FER+) have. Code that compares a data set's classes with a
model's labels maps both through ``canonical_label`` and matches by name, never by position.
"""

from __future__ import annotations

import re

from .spec import FER2013_LABELS

# Spellings met in other data sets and model label lists (keys: canonical names; compared lower case,
# letters only, a leading class number removed: "3_Happy" -> "happy").
CLASS_ALIASES = {
    "angry": ("angry", "anger", "angered", "mad", "furious", "rage"),
    "disgust": ("disgust", "disgusted", "disgusting", "disgustful"),
    "fear": ("fear", "fearful", "fearfulness", "afraid", "scared", "fright", "frightened"),
    "happy": ("happy", "happiness", "happyness", "joy", "joyful", "smile", "smiling", "glad"),
    "sad": ("sad", "sadness", "sorrow", "unhappy"),
    "surprise": ("surprise", "surprised", "surprising", "suprise", "suprised", "surprize", "amazed",
                 "astonished"),
    "neutral": ("neutral", "neutrality", "neutralness"),
    "contempt": ("contempt", "contemptuous", "contemptous", "scorn"),
}
# Every class name the data layer recognises, in label-index order: FER2013's 7, then the extra classes.
KNOWN_LABELS = tuple(FER2013_LABELS) + tuple(name for name in CLASS_ALIASES if name not in FER2013_LABELS)
_ALIAS_TO_NAME = {alias: name for name, aliases in CLASS_ALIASES.items() for alias in aliases}


def _key(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", str(name).lower())


def canonical_label(name: str) -> str:
    """The canonical spelling of a class name: ``"Anger"`` -> ``"angry"``, ``"3_happy"`` -> ``"happy"``,
    ``"Surprised"`` -> ``"surprise"``, ``"contemptuous"`` -> ``"contempt"``; a bare number 0..6 is the FER2013
    class of that index (``"4"`` -> ``"sad"``). A name the table does not know comes back lower case with
    only its letters and digits (``"Calm "`` -> ``"calm"``), so unknown classes still match by name; use
    ``is_known_label`` to tell them apart."""
    key = _key(name)
    if key.isdigit():
        return FER2013_LABELS[int(key)] if int(key) < len(FER2013_LABELS) else key
    return _ALIAS_TO_NAME.get(re.sub(r"^[0-9]+", "", key), key)


def is_known_label(name: str) -> bool:
    """True when ``name`` is a spelling of one of ``KNOWN_LABELS``."""
    return canonical_label(name) in KNOWN_LABELS


def label_index(name: str) -> int | None:
    """Index of ``name`` in ``KNOWN_LABELS`` (FER2013 order, contempt = 7), or None for an unknown class."""
    canonical = canonical_label(name)
    return KNOWN_LABELS.index(canonical) if canonical in KNOWN_LABELS else None
