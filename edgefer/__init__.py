"""edgefer: facial emotion recognition from training to edge deployment.

Importing the package is cheap (standard library only); torch, timm and the inference runtimes are
imported by the submodules that need them.
"""

from .errors import EdgeferError
from .spec import FER2013_LABELS, ModelSpec

__version__ = "0.1.0"
__all__ = ["EdgeferError", "FER2013_LABELS", "ModelSpec", "__version__"]
