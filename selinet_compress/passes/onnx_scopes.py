"""Which PyTorch module each ONNX node came from, so a recipe can keep modules in float by name.

The exporter annotates nodes with module paths (see :func:`~selinet_compress.passes.onnx_export.node_scopes`);
onnxruntime's pre-processing keeps node names but drops the annotations and adds a few unnamed
nodes (it splits HardSwish into HardSigmoid and Mul). :func:`propagate_scopes` names those and
gives them the module of the node that feeds them, so excluding ``body.features`` excludes them too.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from selinet_compress.errors import UserError, did_you_mean

if TYPE_CHECKING:
    import onnx


def propagate_scopes(model: onnx.ModelProto, scopes: dict[str, str]) -> dict[str, str]:
    """Name unnamed nodes of ``model`` in place (``<op>_pre_<i>``) and return a scope for every
    node: its own, else its producer's (graph order is topological), else its first consumer's."""
    result = {name: scope for name, scope in scopes.items()}
    producer: dict[str, str] = {}
    nodes = list(model.graph.node)
    for index, node in enumerate(nodes):
        if not node.name:
            node.name = f"{node.op_type}_pre_{index}"
        for output in node.output:
            producer[output] = node.name
    pending = []
    for node in nodes:
        if node.name in result:
            continue
        fed_by = [producer[i] for i in node.input if i in producer and producer[i] in result]
        if fed_by:
            result[node.name] = result[fed_by[0]]
        else:
            pending.append(node)
    for node in pending:  # graph inputs only: take the first consumer's module
        consumers = [n.name for n in nodes if set(n.input) & set(node.output) and n.name in result]
        result[node.name] = result[consumers[0]] if consumers else ""
    return result


def module_matches(scope: str, prefix: str) -> bool:
    """``body.features.1`` matches ``body.features.1.block.0`` but not ``body.features.10``."""
    return scope == prefix or scope.startswith(prefix + ".")


def _known_prefixes(scopes: Iterable[str]) -> set[str]:
    known = set()
    for scope in scopes:
        parts = scope.split(".") if scope else []
        known.update(".".join(parts[: i + 1]) for i in range(len(parts)))
    return known


def check_modules(modules: Sequence[str], known: Iterable[str]) -> None:
    """A UserError naming the first of ``modules`` that is not a module path in ``known`` (with a
    close match, or the top-level modules)."""
    known = set(known)
    for module in modules:
        if module not in known:
            close = difflib.get_close_matches(module, known, n=1)
            top_level = sorted(k for k in known if k and "." not in k)
            hint = (
                f"; did you mean '{close[0]}'?" if close else f"; top-level modules: {', '.join(top_level)}"
            )
            raise UserError(f"keep_float_modules: no module '{module}' in the model{hint}")


def resolve_keep_float(
    model: onnx.ModelProto, scopes: dict[str, str], modules: Sequence[str], nodes: Sequence[str]
) -> list[str]:
    """Node names of ``model`` to keep in float: those under any of ``modules`` plus ``nodes``.

    A module or node name that matches nothing is a UserError (a typo would otherwise silently
    quantize what the user meant to protect)."""
    names = [n.name for n in model.graph.node]
    check_modules(modules, _known_prefixes(scopes.values()))
    missing = [n for n in nodes if n not in names]
    if missing:
        raise UserError(
            f"keep_float_nodes: no node '{missing[0]}' in the model{did_you_mean(missing[0], names)}"
        )
    keep = [name for name in names if any(module_matches(scopes.get(name, ""), m) for m in modules)]
    return sorted(set(keep) | set(nodes), key=names.index)


# Ops that only move or reshape data: walking back from an output through these reaches the layer
# that computed it.
_PASS_THROUGH = frozenset({"Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity", "Cast", "Transpose"})


def output_layers(model: onnx.ModelProto) -> list[str]:
    """Names of the nodes that compute the graph's outputs: for each output, its producer and, when
    that only moves data (Reshape, Cast, ...), the nodes behind it up to the first computing one."""
    producer = {out: node for node in model.graph.node for out in node.output}
    names: list[str] = []
    for output in model.graph.output:
        node = producer.get(output.name)
        while node is not None:
            if node.name not in names:
                names.append(node.name)
            if node.op_type not in _PASS_THROUGH:
                break
            node = producer.get(node.input[0])
    return names
