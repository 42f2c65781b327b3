import os

os.environ.setdefault("EDGEFER_PROGRESS", "0")
