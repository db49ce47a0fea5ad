"""Draw the lazy graph: Graphviz DOT text (`to_dot`) and rendered files (`save`).

    from tinyjit import viz
    loss = ((a @ b).relu() + 1).sum()
    viz.save(loss, "graph.svg")                          # needs Graphviz's `dot` program
    print(viz.to_dot(loss, kernels=True))                 # nodes grouped by the kernel the scheduler puts them in

Each node shows its op, shape and dtype (and the op's argument where it says something: reduced axes, a
constant's value, a cast's dtype, a movement's shape). Realized buffers are grey boxes (their sources are not
drawn: the graph stops where memory already holds the value); the tensors asked for have a double border. With
`kernels=True` the scheduler's decision is drawn too: one dashed cluster per kernel (or copy), labelled with its
number in the schedule and, where a value got its own buffer although it is neither an output nor a boundary op,
the reason it was not fused. A node inlined into several kernels (computed again in each) is drawn in the
first, and its label names the others.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Sequence, Union

from tinyjit.lazy import Node, toposort
from tinyjit.ops import MOVEMENT, REDUCE, Op
from tinyjit.schedule import schedule_with_members
from tinyjit.tensor import Tensor

Graphable = Union[Tensor, Node, Sequence[Union[Tensor, Node]]]
_MAX_ARG_CHARS = 40
_DOT_TIMEOUT_S = 120


class GraphvizNotFound(RuntimeError):
    """Graphviz's `dot` program is needed to render a graph and is not installed."""


def _nodes_of(tensors: Graphable) -> list[Node]:
    if isinstance(tensors, (Tensor, Node)):
        tensors = [tensors]
    elif not isinstance(tensors, (list, tuple)):
        raise TypeError(f"to_dot: expected a Tensor, a graph Node or a list of them, got {type(tensors).__name__}")
    nodes = []
    for t in tensors:
        if isinstance(t, Tensor):
            nodes.append(t.node)
        elif isinstance(t, Node):
            nodes.append(t)
        else:
            raise TypeError(f"to_dot: expected Tensors or graph Nodes, got {type(t).__name__}")
    if not nodes:
        raise ValueError("to_dot: nothing to draw (no tensors given)")
    return nodes


def _quote(text: str) -> str:
    """A DOT string literal; newlines become centered line breaks."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _arg_text(node: Node) -> str:
    """The node's argument in a few characters, or '' where it adds nothing (a buffer, an elementwise op)."""
    arg = node.arg
    if node.op == Op.CONST:
        text = repr(arg)
    elif node.op in REDUCE:
        text = f"axes={arg}"
    elif node.op in (Op.CAST, Op.BITCAST):
        text = f"to {arg.name}"
    elif node.op == Op.SIN and arg:
        text = f"phase {arg}/4 turn"
    elif node.op in MOVEMENT and node.op not in (Op.RESHAPE, Op.EXPAND):   # those two: the new shape says it
        text = str(arg)
    else:
        return ""
    return text if len(text) <= _MAX_ARG_CHARS else text[:_MAX_ARG_CHARS - 3] + "..."


def _label(node: Node) -> str:
    arg = _arg_text(node)
    lines = [node.op.name + (f" {arg}" if arg else ""), f"{node.shape} {node.dtype.name}"]
    if node.realized:
        lines.append(f"realized on {node.device}")
    return "\n".join(lines)


def to_dot(tensors: Graphable, kernels: bool = False, name: str = "tinyjit") -> str:
    """Graphviz DOT text of the lazy graph behind `tensors` (a Tensor, a graph Node or a list of them).

    One node per graph node (op, shape, dtype; realized buffers as grey boxes, the given tensors with a double
    border), an edge from each source to its user. `kernels=True` groups the nodes into one cluster per kernel of
    the schedule that would realize `tensors` (nothing is run or compiled), labelled with why a value was not
    fused where that is the scheduler's choice. The text is deterministic: node ids follow the graph order.
    Raises TypeError for anything but Tensors and Nodes, ValueError for an empty list.
    """
    roots = _nodes_of(tensors)
    graph = toposort(roots)
    ids = {id(n): f"n{i}" for i, n in enumerate(graph)}
    wanted = {id(n) for n in roots}
    lines = [f"digraph {_quote(name)} {{", "  rankdir=BT;",
             '  node [shape=box, style="rounded,filled", fillcolor=white, fontname="Helvetica", fontsize=10];',
             '  edge [color="#555555", arrowsize=0.6];']

    also_in: dict[int, list[int]] = {}   # node -> the later kernels it is inlined into (computed again there)

    def node_line(n: Node, indent: str) -> str:
        label = _label(n)
        if also_in.get(id(n)):
            label += "\nalso computed in " + ", ".join(f"kernel {k}" for k in also_in[id(n)])
        attrs = [f"label={_quote(label)}"]
        if n.realized:
            attrs += ["shape=box", 'style="filled"', 'fillcolor="#d9d9d9"']
        elif n.op in REDUCE:
            attrs.append('fillcolor="#fde9c9"')
        elif n.op in MOVEMENT:
            attrs.append('fillcolor="#e3eefa"')
        if id(n) in wanted:
            attrs.append("peripheries=2")
        return f"{indent}{ids[id(n)]} [{', '.join(attrs)}];"

    drawn: set[int] = set()
    if kernels:
        unrealized = [n for n in roots if not n.realized]
        schedule = schedule_with_members(unrealized) if unrealized else []
        first_kernel: dict[int, int] = {}
        for k, (_, members) in enumerate(schedule):
            for m in members:
                if id(m) in first_kernel:
                    also_in.setdefault(id(m), []).append(k)
                else:
                    first_kernel[id(m)] = k
        for k, (item, members) in enumerate(schedule):
            members = [m for m in members if id(m) in ids and id(m) not in drawn]
            if not members:
                continue
            title = f"{item.kind} {k}: {item.output.op.name} {item.output.shape}"
            if item.reason:
                title += f"\nnot fused: {item.reason}"
            lines += [f"  subgraph cluster_{k} {{", f"    label={_quote(title)};", '    style="dashed,rounded";',
                      '    color="#1f77b4"; fontname="Helvetica"; fontsize=9; labeljust=l;']
            for m in sorted(members, key=lambda m: int(ids[id(m)][1:])):
                lines.append(node_line(m, "    "))
                drawn.add(id(m))
            lines.append("  }")
    lines += [node_line(n, "  ") for n in graph if id(n) not in drawn]
    for n in graph:
        if n.realized:
            continue
        for s in n.src:   # a node that reads a source twice (x * x) gets two edges, as the graph has
            lines.append(f"  {ids[id(s)]} -> {ids[id(n)]};")
    lines.append("}")
    return "\n".join(lines) + "\n"


def dot_program() -> str | None:
    """The path of Graphviz's `dot` program, or None when it is not installed."""
    return shutil.which("dot")


def save(tensors: Graphable, path: str | os.PathLike, kernels: bool = False) -> Path:
    """Write the graph of `tensors` (see `to_dot`) to `path`: `.dot`/`.gv` as DOT text, any other suffix (`.svg`,
    `.png`, `.pdf`, ...) rendered in that format by Graphviz's `dot` program. Returns the path.

    Raises GraphvizNotFound (a RuntimeError) saying how to install Graphviz when `dot` is missing, and
    RuntimeError with dot's message when it fails (e.g. an unknown format).
    """
    path = Path(path)
    text = to_dot(tensors, kernels=kernels)
    fmt = path.suffix.lstrip(".").lower()
    if fmt in ("dot", "gv"):
        path.write_text(text)
        return path
    if not fmt:
        raise ValueError(f"save: {path} has no suffix; name the format, e.g. graph.svg, graph.png or graph.dot")
    dot = dot_program()
    if dot is None:
        raise GraphvizNotFound(
            f"save: rendering {path.name} needs Graphviz's `dot` program, which is not on PATH. Install Graphviz "
            f"(Debian/Ubuntu: `apt-get install graphviz`; macOS: `brew install graphviz`; conda: `conda install "
            f"graphviz`), or save to a .dot file and render it elsewhere (`dot -T{fmt} graph.dot -o {path.name}`).")
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        proc = subprocess.run([dot, f"-T{fmt}", "-o", str(tmp)], input=text, capture_output=True, text=True,
                              timeout=_DOT_TIMEOUT_S, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"save: `dot -T{fmt}` failed with code {proc.returncode}: {proc.stderr.strip()}")
        os.replace(tmp, path)   # a failed render leaves no half-written file under the final name
    finally:
        tmp.unlink(missing_ok=True)
    return path
