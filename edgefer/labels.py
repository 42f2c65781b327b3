"""Emotion class names as other data sets and models spell them, mapped onto one canonical spelling.

FER2013's 7 classes are canonical (``angry, disgust, fear, happy, sad, surprise, neutral``); ``contempt`` is
an 8th class some data sets (CK+, AffectNet, FER+) have. Code that compares a data set's classes with a
model's labels maps both through ``canonical_label`` and matches by name, never by position.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

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


@dataclass(frozen=True)
class LabelMatch:
    """How a data set's classes line up with a model's output labels, by canonical name (never by position).

    ``shared`` holds the canonical names both have, in the data's class order; ``data_columns[i]`` /
    ``model_columns[i]`` are the data label index and model output index of ``shared[i]``. ``data_only`` and
    ``model_only`` list the classes (as each side spells them) the other side lacks."""

    data_classes: tuple
    model_labels: tuple
    shared: tuple
    data_columns: tuple
    model_columns: tuple
    data_only: tuple
    model_only: tuple

    @property
    def identical(self) -> bool:
        """Same classes in the same order: scores can be read by position."""
        return not self.data_only and not self.model_only and self.data_columns == self.model_columns

    def note(self) -> str:
        """One sentence for reports: what was compared, and what was left out."""
        parts = [f"scored over the {len(self.shared)} classes data and model share, matched by name"]
        if self.data_only:
            parts.append(f"data classes the model lacks: {', '.join(self.data_only)} (their images not scored)")
        if self.model_only:
            parts.append(f"model labels the data lacks: {', '.join(self.model_only)} (not predicted)")
        return "; ".join(parts)


def match_labels(data_classes, model_labels) -> LabelMatch:
    """Match ``data_classes`` (e.g. ``FERDataset.classes``) to ``model_labels`` (``ModelSpec.labels``) through
    ``canonical_label``. ``ModelError`` when one side spells two classes the same way ("happy", "Happiness")
    or nothing matches."""
    from .errors import ModelError

    data_classes, model_labels = tuple(data_classes), tuple(model_labels)
    canonical = {}
    for side, names in (("data classes", data_classes), ("model labels", model_labels)):
        seen: dict = {}
        for name in names:
            key = canonical_label(name)
            if key in seen:
                raise ModelError(f"{side} {list(names)!r}: '{seen[key]}' and '{name}' are the same class ({key})")
            seen[key] = name
        canonical[side] = [canonical_label(name) for name in names]
    model_index = {key: i for i, key in enumerate(canonical["model labels"])}
    data_columns = tuple(i for i, key in enumerate(canonical["data classes"]) if key in model_index)
    if not data_columns:
        raise ModelError(f"no class in common between the data ({', '.join(data_classes)}) and the model "
                         f"({', '.join(model_labels)}), even after mapping spellings (anger/angry, ...)")
    shared = tuple(canonical["data classes"][i] for i in data_columns)
    return LabelMatch(
        data_classes=data_classes, model_labels=model_labels, shared=shared, data_columns=data_columns,
        model_columns=tuple(model_index[key] for key in shared),
        data_only=tuple(name for name, key in zip(data_classes, canonical["data classes"]) if key not in model_index),
        model_only=tuple(name for name, key in zip(model_labels, canonical["model labels"]) if key not in shared),
    )
