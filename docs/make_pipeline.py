"""Generate docs/pipeline.md: one small program followed through every stage, with what each stage really prints.

    python docs/make_pipeline.py            # rewrite docs/pipeline.md
    python docs/make_pipeline.py --check    # exit 1 (and show a diff) when the page no longer matches the code

The program runs in a child process with DEBUG=5, CACHE=0 (every kernel is built, none read from a disk cache) and
THREADS=1; its output is cut into the stages below. So that the page is the same on every machine and every run,
the CPU's vector width is pinned to 256 bits in the child (it picks the optimizations and is written into the
IR), the optimized LLVM IR (the host's LLVM decides it) is left out, and times, rates and kernel-name hashes are
replaced by placeholders. test/test_pipeline_doc.py fails when the page and this output differ.
"""
from __future__ import annotations

import argparse
import difflib
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "docs" / "pipeline.md"

PROGRAM = """\
import numpy as np
from tinyjit import Tensor
a = Tensor(np.arange(12, dtype=np.float32).reshape(3, 4) / 6 - 1, requires_grad=True)
b = Tensor(np.arange(8, dtype=np.float32).reshape(4, 2) / 4 - 1, requires_grad=True)
loss = ((a @ b).relu() + 1).sum()
loss.backward()
Tensor.realize_all(loss, a.grad, b.grad)
"""

# The child: pin the vector width, run PROGRAM, then print the graphs and values after a marker. The graph
# listing is printed from the nodes (realized by now; their sources are kept).
CHILD = """\
import codegen.llvmir, codegen.llvm_ops, codegen.cpu_opts
codegen.llvmir.host_vector_bits = codegen.llvm_ops.host_vector_bits = codegen.cpu_opts.host_vector_bits = lambda: 256
from tinyjit.lazy import toposort
from tinyjit import viz
{program}
print("=== values")
print("loss", loss.numpy())
print("a.grad", a.grad.numpy().tolist())
print("b.grad", b.grad.numpy().tolist())
an, bn = a.numpy().astype(np.float64), b.numpy().astype(np.float64)
mask = (an @ bn > 0).astype(np.float64)   # d loss / d (a @ b): relu's gradient
same = (np.allclose(loss.numpy(), (np.maximum(an @ bn, 0) + 1).sum(), rtol=1e-6)
        and np.allclose(a.grad.numpy(), mask @ bn.T) and np.allclose(b.grad.numpy(), an.T @ mask))
print("matches numpy:", bool(same))
print("=== end")
""".format(program=PROGRAM)


def graph_listing(roots, names: dict) -> str:
    """One line per node: id, op and argument, sources, shape and dtype (the graph, as text)."""
    from tinyjit import viz
    from tinyjit.lazy import toposort
    nodes = toposort(roots, stop_at_realized=False)
    ids = {id(n): i for i, n in enumerate(nodes)}
    lines = []
    for i, n in enumerate(nodes):
        arg = viz._arg_text(n)
        srcs = ", ".join(f"%{ids[id(s)]}" for s in n.src)
        head = f"%{i:<3} {n.op.name}({srcs}){' ' + arg if arg else ''}"
        name = f"   <- {names[id(n)]}" if id(n) in names else ""
        lines.append(f"{head:<44} {str(n.shape):<10} {n.dtype.name}{name}")
    return "\n".join(lines)


def build_graphs() -> tuple[str, str]:
    """The forward graph of the loss, and the graph of loss, a.grad and b.grad, before anything runs."""
    scope: dict = {}
    exec(PROGRAM.replace("Tensor.realize_all(loss, a.grad, b.grad)\n", ""), scope)
    loss, a, b = scope["loss"], scope["a"], scope["b"]
    forward = graph_listing([loss.node], {id(loss.node): "loss", id(a.node): "a", id(b.node): "b"})
    backward = graph_listing([a.grad.node, b.grad.node],
                             {id(a.grad.node): "a.grad", id(b.grad.node): "b.grad", id(a.node): "a",
                              id(b.node): "b"})
    return forward, backward


def run_child() -> str:
    env = dict(os.environ, DEBUG="5", CACHE="0", THREADS="1", PYTHONPATH=str(ROOT))
    env.pop("DEVICE", None)
    proc = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, env=env, cwd=ROOT,
                          timeout=600)
    if proc.returncode != 0:
        raise RuntimeError(f"the pipeline program failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return proc.stdout


def normalize(text: str) -> str:
    """Times, rates and hashes as placeholders, no trailing blanks: what stays is what the code decides."""
    text = re.sub(r"\b(r|E)_([0-9a-z_]+?)_[0-9a-f]{10}\b", r"\1_\2_<hash>", text)
    text = re.sub(r"\b(r|E)_[0-9a-f]{16}\b", r"\1_<hash>", text)   # a CPU function: its kind and body hash
    text = re.sub(r"\d+(\.\d+)? (us|ms|s)\b", "<time>", text)
    text = re.sub(r"\d+\.\d+ (GFLOP/s|GB/s)", r"<rate> \1", text)
    return "\n".join(line.rstrip() for line in text.splitlines())


def sections(output: str) -> dict:
    """Cut DEBUG=5 output into: schedule, per kernel (ast, program, source), launches, realize line, values."""
    out = {"kernels": [], "launches": [], "schedule": [], "realize": "", "values": []}
    lines = output.splitlines()
    current, kernel = "schedule", None
    for line in lines:
        if line.startswith("=== values"):
            current = "values"
            continue
        if line.startswith("=== end"):
            current = "skip"   # what follows is DEBUG=2's table at exit, sorted by the (varying) times
            continue
        if current == "values":
            out["values"].append(line)
            continue
        if line.startswith("--- kernel "):
            kernel = {"ast": [line], "program": [], "source": []}
            out["kernels"].append(kernel)
            current = "ast"
        elif line.startswith("--- linear program of "):
            current = "program"
        elif line.startswith("--- source of "):
            current = "source"
        elif line.startswith("--- compiled "):
            current = "skip"
        elif re.match(r"^\s+CPU\s+\S+\s+", line):
            out["launches"].append(re.sub(r" {2,}", "  ", line.strip()))
            current = "skip"
        elif line.startswith("realize: "):
            out["realize"] = line
            current = "skip"
        elif current == "schedule":
            out["schedule"].append(line)
        elif current in ("ast", "program", "source") and kernel is not None:
            kernel[current].append(line)
    return out


def fenced(text: str, lang: str = "") -> str:
    return f"```{lang}\n{text.rstrip()}\n```\n"


def render() -> str:
    forward, backward = build_graphs()
    parts = sections(normalize(run_child()))
    first = parts["kernels"][0]
    source = "\n".join(first["source"])
    source = source[:source.index("define void", 10)] if source.count("define void") > 1 else source
    md = [
        "# One program through the pipeline\n",
        "This page follows one small program through every stage of tinyjit, with the real output of each (it is\n"
        "generated by `python docs/make_pipeline.py`, and `test/test_pipeline_doc.py` fails when it no longer\n"
        "matches what the code prints). See [design.md](design.md) for the map. The output comes from one run with\n"
        "`DEBUG=5 CACHE=0 THREADS=1`; times, rates and kernel-name hashes are placeholders, and the CPU's vector\n"
        "width is pinned to 256 bits so the page is the same on every machine.\n",
        "## 1. The program\n",
        fenced(PROGRAM, "python"),
        "Nothing runs until `realize_all`: every line before it only builds a graph.\n",
        "## 2. The lazy graph\n",
        "Each Tensor op adds immutable nodes of the primitive ops (`tinyjit/ops.py`): `a @ b` is a broadcast\n"
        "multiply (RESHAPE, EXPAND, PERMUTE: views, no copies) and a SUM; `relu` is a WHERE; `+ 1` adds an expanded\n"
        "CONST. One line per node: id, op and its argument, sources, shape, dtype.\n",
        fenced(forward),
        "## 3. Autograd: the backward graph\n",
        "`loss.backward()` walks the graph in reverse and applies one rule per primitive\n"
        "(`tinyjit/autograd_graph.py`), adding new lazy nodes: `a.grad` and `b.grad` are graphs over the forward\n"
        "nodes, not values.\n",
        fenced(backward),
        "## 4. The schedule (`DEBUG=3`)\n",
        "The scheduler (`tinyjit/schedule.py`) cuts the forward and backward graphs into kernels, each storing\n"
        "one buffer. Elementwise work fuses into the kernel that consumes it; a boundary that is not an output\n"
        "says why it was not fused.\n",
        fenced("\n".join(parts["schedule"])),
        "## 5. Kernel ASTs and their optimizations (`DEBUG=3`)\n",
        "The kernel cache (`tinyjit/kernel_cache.py`) hands each kernel's AST to the code generator's one entry,\n"
        "`codegen/pipeline.py`. Each kernel is an AST of LOADs and STOREs through views over a shared loop shape\n"
        "(`global | reduce`), with the optimizations chosen for it (`opts`: upcasts `u`, unrolls, ...), as\n"
        "`codegen/kernel.py` describes them.\n",
        fenced("\n\n".join("\n".join(k["ast"]) for k in parts["kernels"])),
        "## 6. The loop program (`DEBUG=5`)\n",
        "The linearizer (`codegen/linearizer.py`) turns the first kernel (the matmul's reduce) into a flat list\n"
        "of micro-ops: loops over the global and reduce axes, index math from the views, an accumulator. A loop\n"
        "named `..._novec` is one LLVM's loop vectorizer leaves alone (a small, light kernel: vectorizing it\n"
        "multiplies its code for no speed).\n",
        fenced("\n".join(first["program"])),
        "## 7. LLVM IR (`DEBUG=4`)\n",
        "The renderer (`codegen/llvmir.py`) prints that program as LLVM IR; llvmlite optimizes it (`-O3`, shown by\n"
        "`DEBUG=5`, not here: it depends on the host) and compiles it to machine code (`DEBUG=6`). Every CPU\n"
        "kernel also gets a thunk with one signature, so the native thread pool can split any kernel's outer\n"
        "range.\n",
        fenced(source, "llvm"),
        "## 8. Launches and timing (`DEBUG=2`, `DEBUG=1`)\n",
        "One line per kernel launch (device, name, launch size, time, GFLOP/s, GB/s), then the realize summary.\n",
        fenced("\n".join(parts["launches"] + [parts["realize"]])),
        "## 9. The values\n",
        fenced("\n".join(parts["values"])),
    ]
    return "\n".join(md)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare with docs/pipeline.md instead of writing it")
    args = parser.parse_args()
    page = render()
    if args.check:
        old = PAGE.read_text() if PAGE.exists() else ""
        if old != page:
            sys.stdout.writelines(difflib.unified_diff(old.splitlines(True), page.splitlines(True),
                                                       "docs/pipeline.md", "generated"))
            return 1
        print("docs/pipeline.md is up to date")
        return 0
    PAGE.write_text(page)
    print(f"wrote {PAGE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
