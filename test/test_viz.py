"""tinyjit.viz: the DOT text of lazy graphs (structure checked by parsing it), rendering with Graphviz's `dot`, and
the scheduler's reasons for each kernel boundary that is not a realize (DEBUG=3 and the DOT clusters).
Nothing here runs a kernel: inputs are made from numpy arrays (realized without one) and drawing only schedules."""
import re
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from tinyjit import Tensor, viz
from tinyjit.lazy import toposort
from tinyjit.schedule import create_schedule, format_schedule

NODE = re.compile(r'^\s*(n\d+) \[label="((?:[^"\\]|\\.)*)"(.*)\];$')
EDGE = re.compile(r"^\s*(n\d+) -> (n\d+);$")


def parse(dot: str):
    """Nodes {id: (label lines, attrs text, cluster index or None)}, edges [(src, dst)], cluster titles."""
    nodes, edges, titles, cluster = {}, [], [], None
    for line in dot.splitlines():
        if m := re.match(r"^\s*subgraph cluster_(\d+) \{$", line):
            cluster = int(m.group(1))
        elif line.strip() == "}" and line.startswith("  }"):
            cluster = None
        elif cluster is not None and (m := re.match(r'^\s*label="((?:[^"\\]|\\.)*)";$', line)):
            titles.append(m.group(1).replace("\\n", "\n"))
        elif m := NODE.match(line):
            nodes[m.group(1)] = (m.group(2).split("\\n"), m.group(3), cluster)
        elif m := EDGE.match(line):
            edges.append((m.group(1), m.group(2)))
    assert dot.startswith('digraph "tinyjit" {') and dot.rstrip().endswith("}")
    return nodes, edges, titles


def data(*shape, requires_grad=False):
    return Tensor(np.arange(np.prod(shape), dtype=np.float32).reshape(shape) / 7 - 1, requires_grad=requires_grad)


def test_every_graph_node_is_drawn_with_op_shape_dtype_and_every_edge():
    a, b = data(4, 8), data(8, 3)
    out = ((a @ b).relu() + 1).sum()
    graph = toposort([out.node])
    nodes, edges, titles = parse(viz.to_dot(out))
    assert len(nodes) == len(graph) and not titles
    ids = {}
    for i, n in enumerate(graph):
        label, attrs, _ = nodes[f"n{i}"]
        assert label[0].split(" ")[0] == n.op.name and label[1] == f"{n.shape} {n.dtype.name}"
        ids[id(n)] = f"n{i}"
    expected = sorted((ids[id(s)], ids[id(n)]) for n in graph if not n.realized for s in n.src)
    assert sorted(edges) == expected
    # the tensor asked for has a double border, realized inputs are grey boxes that say so
    assert "peripheries=2" in nodes[ids[id(out.node)]][1]
    buffers = [v for v in nodes.values() if v[0][0] == "BUFFER"]
    assert len(buffers) == 2 and all(v[0][2] == "realized on CPU" and "#d9d9d9" in v[1] for v in buffers)


def test_ops_show_their_arguments():
    x = data(2, 3)
    nodes, _, _ = parse(viz.to_dot([x.sum(1), x.permute(1, 0), x.int(), (x + 2.5)]))
    firsts = {v[0][0] for v in nodes.values()}
    assert {"SUM axes=(1,)", "PERMUTE (1, 0)", "CAST to int32", "CONST 2.5"} <= firsts


def test_a_realized_intermediate_hides_its_sources():
    x = data(3, 3)
    y = (x * 2).exp()
    y.realize()
    nodes, edges, _ = parse(viz.to_dot(y + 1))
    names = sorted(v[0][0] for v in nodes.values())
    assert names.count("MUL") == 0 and len(edges) == 4   # y is one realized box; + 1 is ADD(y, CONST expanded)
    realized = [v for v in nodes.values() if "realized on CPU" in v[0]]
    assert len(realized) == 1


def test_softmax_clusters_three_kernels_with_the_reasons():
    x = data(4, 8)
    nodes, _, titles = parse(viz.to_dot(x.softmax(), kernels=True))
    assert len(titles) == 3
    assert titles[0].startswith("kernel 0: RMAX (4, 1)") and "read through an EXPAND to (4, 8)" in titles[0]
    assert titles[1].startswith("kernel 1: SUM (4, 1)") and "not fused" in titles[1]
    assert titles[2] == "kernel 2: IDIV (4, 8)"   # the output: a realize, no reason
    # the exp is computed in kernel 1 and again in kernel 2: drawn once, in kernel 1, saying so
    exp = [v for v in nodes.values() if v[0][0] == "EXP2"]
    assert len(exp) == 1 and exp[0][2] == 1 and exp[0][0][-1] == "also computed in kernel 2"
    # the realized input is in no cluster
    assert [v[2] for v in nodes.values() if v[0][0] == "BUFFER"] == [None]


def test_backward_graph_and_kernels():
    w = data(8, 3, requires_grad=True)
    loss = (data(4, 8) @ w).relu().sum()
    loss.backward()
    nodes, edges, titles = parse(viz.to_dot([loss, w.grad], kernels=True))
    assert sum("peripheries=2" in v[1] for v in nodes.values()) == 2
    schedule = create_schedule([loss.node, w.grad.node])
    assert len(titles) == len(schedule) and all(t.startswith("kernel ") for t in titles)


@pytest.mark.parametrize("make, reason", [
    (lambda x: (lambda s: [s + 1, s * 2])(x.sum(1)), "is read by two kernels"),
    (lambda x: [x.sum(1).sum(0)], "is reduced again by the SUM"),
    (lambda x: [x.amax(1, keepdim=True).expand(4, 8) + x], "is read through an EXPAND to (4, 8)"),
    (lambda x: [x.sum(1) + x.reshape(8, 4).sum(0)], "reduces (8, 4) over axes (0,), but the kernel of the ADD"),
])
def test_debug3_schedule_says_why_a_boundary_was_not_fused(make, reason):
    x = data(4, 8)
    outs = [t.node for t in make(x)]
    items = create_schedule(outs)
    text = format_schedule(items)
    reasons = [i.reason for i in items if i.reason]
    assert reasons and any(reason in r for r in reasons), text
    assert all(i.reason is None for i in items if i.output in outs)   # outputs are realizes: no reason
    assert f"not fused: {reasons[0]}" in text


def test_no_reason_when_everything_fuses():
    x = data(4, 8)
    items = create_schedule([((x * 2 + 1).relu().sum()).node])
    assert len(items) == 1 and items[0].reason is None and "not fused" not in format_schedule(items)


def test_bad_arguments():
    with pytest.raises(TypeError, match="a Tensor, a graph Node or a list of them, got ndarray"):
        viz.to_dot(np.ones(3))
    with pytest.raises(TypeError, match="expected Tensors or graph Nodes, got int"):
        viz.to_dot([data(2), 3])
    with pytest.raises(ValueError, match="nothing to draw"):
        viz.to_dot([])


def test_save_dot_text(tmp_path):
    x = data(2, 2)
    path = viz.save(x + x, tmp_path / "g.dot")
    assert path.read_text() == viz.to_dot(x + x)


def test_save_without_dot_says_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setattr(viz, "dot_program", lambda: None)
    with pytest.raises(viz.GraphvizNotFound, match=r"apt-get install graphviz"):
        viz.save(data(2) * 2, tmp_path / "g.svg")
    assert not list(tmp_path.iterdir())
    with pytest.raises(ValueError, match="no suffix"):
        viz.save(data(2) * 2, tmp_path / "graph")


def _need_dot():
    if viz.dot_program() is None:
        pytest.skip("Graphviz's `dot` is not installed (apt-get install graphviz): the SVG render is not tested")


def test_save_svg_with_real_dot(tmp_path):
    _need_dot()
    x = data(4, 8)
    path = viz.save(x.softmax(), tmp_path / "softmax.svg", kernels=True)
    root = ET.parse(path).getroot()
    assert root.tag.endswith("svg")
    texts = " ".join(t.text or "" for t in root.iter() if t.tag.endswith("text"))
    for word in ("RMAX axes=(1,)", "EXP2", "IDIV", "kernel 0: RMAX (4, 1)", "realized on CPU"):
        assert word in texts
    assert [p.name for p in tmp_path.iterdir()] == ["softmax.svg"]   # no temporary left behind


def test_dot_failure_is_reported_and_leaves_no_file(tmp_path):
    _need_dot()
    with pytest.raises(RuntimeError, match="dot -Tnot_a_format` failed"):
        viz.save(data(2) * 2, tmp_path / "g.not_a_format")
    assert not list(tmp_path.iterdir())
