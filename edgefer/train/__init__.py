"""Training and evaluation (torch + timm).

``TrainConfig`` (edgefer.train.config) holds every option; ``fit`` trains a run directory;
``predict_logits`` / ``evaluate_dataset`` score a model exactly as exported models are fed.
Attributes are imported lazily so that ``edgefer.train.config`` stays torch-free for the CLI.
"""

from importlib import import_module

_EXPORTS = {"TrainConfig": "config", "fit": "loop", "predict_logits": "evaluation", "evaluate_dataset": "evaluation"}
__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
