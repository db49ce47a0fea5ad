"""docs/pipeline.md is generated from what the code prints (docs/make_pipeline.py): it must still match."""
import difflib
import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _generator():
    spec = importlib.util.spec_from_file_location("make_pipeline", ROOT / "docs" / "make_pipeline.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_pipeline_page_matches_the_code():
    page = (ROOT / "docs" / "pipeline.md").read_text()
    generated = _generator().render()
    diff = "".join(difflib.unified_diff(page.splitlines(True), generated.splitlines(True), "docs/pipeline.md",
                                        "generated", n=1))
    assert page == generated, f"docs/pipeline.md is out of date: run `python docs/make_pipeline.py`\n{diff[:6000]}"


def test_normalize_hides_only_what_varies():
    gen = _generator()
    line = "  CPU  r_3_2_4_9158b1896c   global (3,)    12.5 us   0.01 GFLOP/s   1.25 GB/s"
    assert gen.normalize(line) == "  CPU  r_3_2_4_<hash>   global (3,)    <time>   <rate> GFLOP/s   <rate> GB/s"
    assert gen.normalize("realize: 5 kernels (5 compiled), 5 items in 4778.73 ms") == \
        "realize: 5 kernels (5 compiled), 5 items in <time>"
