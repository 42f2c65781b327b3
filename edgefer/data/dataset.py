"""The in-memory data set: one contiguous uint8 (N, 48, 48) array, int64 labels and source ids, and for image
folders the files the images came from, so each model can be given faces at its own size and colour."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..spec import FER2013_LABELS

IMAGE_SIZE = 48
NUM_CLASSES = len(FER2013_LABELS)
SPLIT_NAMES = ("train", "val", "test", "private_test")


@dataclass
class FERDataset:
    """Images, labels and source ids of one split.

    ``images`` is uint8 (N, 48, 48), C-contiguous; ``labels`` int64 (N,) indexing ``FER2013_LABELS``;
    ``ids`` (N,) str, stable human-readable source ids (``fer2013.csv:row=17`` or ``train/angry/x.png``).
    ``usage`` holds the FER2013 Usage string per row when the data carries one (synthetic data does).
    ``classes`` names the label indices: FER2013's 7 classes, extended (``edgefer.labels.KNOWN_LABELS``) when
    the data has more, e.g. a ``contempt`` folder is label 7.
    ``originals`` (N,) str, for image folders: the file each image was read from, "" where the file is already
    FER2013's form (48x48 gray); None when no image has another form (FER2013 CSV and 48 px folders). Models are
    evaluated on ``faces`` read from these originals at their own input size and colour, never on the 48 px
    gray copy (which serves training and the FER2013 statistics).
    """

    images: np.ndarray
    labels: np.ndarray
    ids: np.ndarray
    name: str = "train"
    source: str = ""
    synthetic: bool = False
    usage: np.ndarray | None = field(default=None, repr=False)
    classes: tuple = FER2013_LABELS
    originals: np.ndarray | None = field(default=None, repr=False)

    def __post_init__(self):
        self.images = np.ascontiguousarray(self.images, dtype=np.uint8)
        self.labels = np.asarray(self.labels, dtype=np.int64)
        self.ids = np.asarray(self.ids, dtype=str)
        n = len(self.images)
        if self.images.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE) or self.labels.shape != (n,) or self.ids.shape != (n,):
            raise ValueError(f"inconsistent shapes: images {self.images.shape}, labels {self.labels.shape}, "
                             f"ids {self.ids.shape}")
        self.classes = tuple(self.classes)
        if n and int(self.labels.max(initial=0)) >= len(self.classes):
            raise ValueError(f"label {int(self.labels.max())} has no class name (classes: {self.classes})")
        if self.usage is not None:
            self.usage = np.asarray(self.usage, dtype=str)
        if self.originals is not None:
            self.originals = np.asarray(self.originals, dtype=str)
            if self.originals.shape != (n,):
                raise ValueError(f"inconsistent shapes: images {self.images.shape}, originals {self.originals.shape}")
            if not (self.originals != "").any():
                self.originals = None

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[np.ndarray, int]:
        return self.images[index], int(self.labels[index])

    def subset(self, indices, name: str | None = None) -> FERDataset:
        """A new data set holding the rows at ``indices`` (a copy), in that order."""
        indices = np.asarray(indices, dtype=np.int64)
        return FERDataset(self.images[indices], self.labels[indices], self.ids[indices],
                          name=self.name if name is None else name, source=self.source, synthetic=self.synthetic,
                          usage=None if self.usage is None else self.usage[indices], classes=self.classes,
                          originals=None if self.originals is None else self.originals[indices])

    def faces(self, indices, size: int, gray: bool = True) -> np.ndarray:
        """Faces at ``indices`` as a model of ``size`` px takes them: uint8 (n, size, size) gray, or
        (n, size, size, 3) RGB with ``gray=False``. Images read from other files than FER2013's 48 px gray are
        read again from their originals (the centred square crop, area-averaged when shrinking, bilinear when
        enlarging: ``edgefer.data.images.read_face``), streamed per call so memory stays bounded; the others
        (and every face of FER2013 data at 48 px gray) are the 48 px images as they are, resized the same way."""
        from .images import read_face

        indices = np.arange(len(self))[indices] if isinstance(indices, slice) else np.asarray(indices, np.int64)
        if gray and size == IMAGE_SIZE and (self.originals is None or not (self.originals[indices] != "").any()):
            return self.images[indices]
        out = np.empty((len(indices), size, size) if gray else (len(indices), size, size, 3), np.uint8)
        for k, i in enumerate(indices):
            original = "" if self.originals is None else str(self.originals[i])
            out[k] = read_face(original or self.images[i], size, gray)
        return out

    def class_counts(self, num_classes: int | None = None) -> np.ndarray:
        """Images per class, int64 (num_classes,), by default one entry per name in ``classes``."""
        return np.bincount(self.labels, minlength=len(self.classes) if num_classes is None else num_classes
                           ).astype(np.int64)

    def stats(self) -> dict:
        """N, per-class counts and the mean/std pixel intensity (0..255)."""
        hist = np.zeros(256, np.int64)
        for start in range(0, len(self), 4096):  # chunked: a 35k-image set would need GBs as one float array
            hist += np.bincount(self.images[start:start + 4096].ravel(), minlength=256)
        values, total = np.arange(256, dtype=np.float64), max(int(hist.sum()), 1)
        mean = float(hist @ values / total)
        std = float(np.sqrt(hist @ (values - mean) ** 2 / total))
        counts = self.class_counts()
        return {"n": len(self), "class_counts": dict(zip(self.classes, counts.tolist())),
                "mean": round(mean, 3), "std": round(std, 3)}
