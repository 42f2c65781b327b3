"""FER2013 data: readers (CSV, split folders, class folders), seeded stratified splits with a manifest,
class weights, and procedural synthetic faces. numpy + stdlib; Pillow only for image folders."""

from ..labels import KNOWN_LABELS, canonical_label, is_known_label, label_index
from ..spec import FER2013_LABELS
from .dataset import IMAGE_SIZE, NUM_CLASSES, SPLIT_NAMES, FERDataset
from .readers import (
    CLASS_ALIASES,
    Loaded,
    Report,
    is_synthetic,
    load,
    read_fer_csv,
    read_image_folders,
    synthetic_marker,
    to_gray48,
)
from .splits import (
    Splits,
    calibration_split,
    class_weights,
    evaluation_set,
    fingerprint,
    inspect_report,
    prepare_splits,
    stratified_split,
)
from .synth import (
    FER2013_PRIORS,
    class_quota,
    synth_csv_path,
    synthesize,
    validate_synth_options,
    write_fer_csv,
)

LABELS = FER2013_LABELS

__all__ = [
    "CLASS_ALIASES", "FER2013_PRIORS", "IMAGE_SIZE", "KNOWN_LABELS", "LABELS", "NUM_CLASSES", "SPLIT_NAMES",
    "FERDataset", "Loaded", "Report", "Splits", "calibration_split", "canonical_label", "class_quota",
    "class_weights", "evaluation_set", "fingerprint", "inspect_report", "is_known_label", "is_synthetic",
    "label_index", "load", "prepare_splits", "read_fer_csv", "read_image_folders", "stratified_split",
    "synth_csv_path", "synthesize", "synthetic_marker", "to_gray48", "validate_synth_options", "write_fer_csv",
]
