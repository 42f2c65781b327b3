"""``--keep-fp``: which nodes of a graph stay in floating point, one matcher for every graph kind (ONNX nodes for
the Q/DQ and ORT CPU quantizers, OpenVINO ops for NNCF)."""

from __future__ import annotations

import fnmatch

from ..errors import ExportError

NODE_ALIASES = ("first-conv", "classifier")  # --keep-fp shortcuts: the stem convolution, the final Gemm/MatMul


def match_nodes(nodes: list[tuple[str, str]], patterns, *, conv: tuple[str, ...], classifier: tuple[str, ...], noun: str,
          names: str, head: int) -> list[str]:
    """The names of the ``(name, op type)`` ``nodes`` the ``patterns`` match, in pattern order, each once: the alias
    ``first-conv`` (the first node of a ``conv`` type), ``classifier`` (the last of a ``classifier`` type) or an
    fnmatch pattern on names. A pattern that matches nothing is one ExportError naming the first ``head`` and the
    last 2 real names (``noun``: what a node is called, ``names``: what the patterns are matched on)."""
    out: list[str] = []
    for pattern in patterns:
        if pattern == "first-conv":
            found = [name for name, kind in nodes if kind in conv][:1]
        elif pattern == "classifier":
            found = [name for name, kind in nodes if kind in classifier][-1:]
        else:
            found = [name for name, _ in nodes if fnmatch.fnmatchcase(name, pattern)]
        if not found:
            sample = ", ".join(name for name, _ in nodes[:head] + nodes[-2:])
            raise ExportError(f"--keep-fp {pattern!r} matches no {noun}; use {' or '.join(NODE_ALIASES)} or an fnmatch "
                              f"pattern on {names} (e.g. {sample})")
        out.extend(name for name in found if name not in out)
    return out
