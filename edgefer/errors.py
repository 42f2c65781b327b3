"""One exception family for user errors; the CLI prints them as one line and exits 2."""


class EdgeferError(Exception):
    """A problem with the user's input, files or environment (not a bug)."""


class DataError(EdgeferError):
    """Unreadable or malformed data: the message names the file and row or path."""


class ModelError(EdgeferError):
    """A model file or its metadata is missing, truncated or inconsistent."""


class ExportError(EdgeferError):
    """An export, calibration or engine build could not be done as asked."""


class InputError(EdgeferError):
    """An image or batch handed to the runtime has the wrong shape, dtype or content."""


class UsageError(EdgeferError):
    """A command-line option, or an output path that cannot be written as asked."""


class OutputError(UsageError):
    """An output cannot be written: a full disk, a read-only file system, no permission (nothing was published)."""


class MissingDependency(EdgeferError):
    """An optional package is not installed; the message names the extra that provides it."""

    def __init__(self, package: str, extra: str, purpose: str = ""):
        self.package, self.extra = package, extra
        what = f" (needed for {purpose})" if purpose else ""
        super().__init__(f"{package} is not installed{what}: pip install 'edgefer[{extra}]'")


def require(module: str, extra: str, purpose: str = ""):
    """Import and return ``module``, or raise MissingDependency naming the extra to install."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        if exc.name and module.split(".")[0] != exc.name.split(".")[0]:
            raise  # the package is there but one of its own imports is broken: a bug, keep the traceback
        raise MissingDependency(module.split(".")[0], extra, purpose) from None
