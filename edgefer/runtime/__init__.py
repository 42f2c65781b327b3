"""Torch-free inference for exported FER models: ONNX Runtime, OpenVINO or TensorRT behind one API.

    from edgefer.runtime import EmotionRecognizer
    recognizer = EmotionRecognizer.open("fer.onnx")    # or .xml (OpenVINO), .engine/.plan (TensorRT)
    prediction = recognizer.predict(face_crop)          # uint8 gray or BGR, any size
    print(prediction.labels[0], prediction.probs[0])
    session = recognizer.video()                        # video: faces tracked, probabilities smoothed per track

Imports numpy and the standard library only; each backend imports its own runtime when a model is opened.
"""

from .base import Backend, TensorInfo, open_backend
from .faces import HaarFaceDetector
from .recognizer import EmotionRecognizer, Face, FramePrediction, OutputKindWarning, Prediction
from .video import IoUTracker, ProbabilitySmoother, TrackedFace, VideoSession

__all__ = ["Backend", "EmotionRecognizer", "Face", "FramePrediction", "HaarFaceDetector", "IoUTracker",
           "OutputKindWarning", "Prediction", "ProbabilitySmoother", "TensorInfo", "TrackedFace", "VideoSession",
           "open_backend"]
