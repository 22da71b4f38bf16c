"""A network's module tree, derived from its recorded layers' module paths alone.

Any model's layers are named by their dotted module paths (``layer1.0.conv1``,
``features.denseblock2.denselayer3.conv1``), so the tree is the trie of those paths: no
model name and no layer name is assumed. Two rewrites make it read as stages → blocks →
layers: a node that records nothing and holds a single child is merged into it
(``downsample`` + ``0`` becomes ``downsample.0``), and a top-level wrapper that holds three
quarters of the network and records nothing itself (torchvision's ``features``, RegNet's
``trunk_output``; not a ResNet's ``layer3``) is opened, so its
children become the stages. ``chart_groups`` cuts a node's layers into at most a dozen
consecutive groups along its children (the stages, for the root), which charts draw as
one series each.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from generator.store import LayerSpec

MAX_SERIES = 12  # lines a chart can show and still be told apart


@dataclass
class TreeNode:
    """One module of the tree: its path, the layer recorded at it (if any) and its
    children in model order. ``label`` is the path relative to the node above it."""

    path: str
    label: str
    layer: LayerSpec | None = None
    children: list[TreeNode] = field(default_factory=list)

    def layers(self) -> list[LayerSpec]:
        """Every recorded layer at or below this node, in model order (a block's own
        output after the layers inside it, as models compute them)."""
        inner = [layer for child in self.children for layer in child.layers()]
        return [*inner, self.layer] if self.layer is not None else inner

    def walk(self, depth: int = 0) -> Iterator[tuple[int, TreeNode]]:
        """(depth, node) for this node and every node below it, depth first."""
        yield depth, self
        for child in self.children:
            yield from child.walk(depth + 1)


def module_path(layer: LayerSpec) -> str:
    """The layer's module path (stores before schema 2 have its name only)."""
    return layer.module or layer.name


def module_tree(layers: Sequence[LayerSpec]) -> TreeNode:
    """The tree of ``layers`` (model order kept); the root is the model (path ``""``),
    its children the stages."""
    root = TreeNode("", "")
    for layer in layers:
        node = root
        parts = module_path(layer).split(".")
        for depth in range(1, len(parts) + 1):
            path = ".".join(parts[:depth])
            found = next((c for c in node.children if c.path == path), None)
            if found is None:
                found = TreeNode(path, parts[depth - 1])
                node.children.append(found)
            node = found
        node.layer = layer
    root.children = [_merged(child) for child in root.children]
    return _opened(root, len(layers))


def _merged(node: TreeNode) -> TreeNode:
    """``node`` with every chain of record-less single-child modules merged into one."""
    while node.layer is None and len(node.children) == 1:
        child = node.children[0]
        node = TreeNode(child.path, f"{node.label}.{child.label}", child.layer, child.children)
    node.children = [_merged(child) for child in node.children]
    return node


def _opened(root: TreeNode, total: int) -> TreeNode:
    """Open top-level wrappers that record nothing and hold three quarters of the layers,
    so the stages are the wrapper's children; their labels stay relative to it."""
    while True:
        wrapper = next(
            (
                c
                for c in root.children
                if c.layer is None and len(c.children) > 1 and len(c.layers()) * 4 >= total * 3
            ),
            None,
        )
        if wrapper is None:
            return root
        at = root.children.index(wrapper)
        root.children[at : at + 1] = wrapper.children


def chart_groups(node: TreeNode, limit: int = MAX_SERIES) -> list[tuple[str, list[LayerSpec]]]:
    """Consecutive groups of the layers under ``node`` for a chart of at most ``limit``
    series: one per layer when they are few, else one per child module (the node's own
    layer, a block's output, one more), neighbours joined evenly when there are more
    than ``limit``. Each group is (label, its layers in model order); labels are module
    paths below ``node`` (``denselayer3.conv1`` in ``denseblock2``), which a legend can
    show whole."""
    layers = node.layers()
    if len(layers) <= limit:
        return [(_below(node, module_path(layer)), [layer]) for layer in layers]
    parts = [(child.label, child.layers()) for child in node.children]
    if node.layer is not None:
        parts.append(("output", [node.layer]))
    per = math.ceil(len(parts) / limit)
    joined = []
    for start in range(0, len(parts), per):
        part = parts[start : start + per]
        label = part[0][0] if len(part) == 1 else f"{part[0][0]} … {part[-1][0]}"
        joined.append((label, [layer for _, group in part for layer in group]))
    return joined


def _below(node: TreeNode, path: str) -> str:
    """``path`` relative to ``node`` (the whole path at the model's top level)."""
    prefix = node.path + "."
    return path[len(prefix) :] if node.path and path.startswith(prefix) else path
