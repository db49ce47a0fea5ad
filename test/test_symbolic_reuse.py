"""Index math builds expressions by adding terms thousands of times per register block: an addition reuses the
terms it does not change, and each expression renders its text (the key like terms are collected by) once.
Counted, never timed."""
from tinyjit import symbolic
from tinyjit.symbolic import Mul, Num, Sum, Var


def test_an_addition_keeps_the_terms_it_does_not_change():
    i, j, k = Var("i", 0, 7), Var("j", 0, 7), Var("k", 0, 7)
    left = i * 64 + j * 8 + 3
    total = left + k * 8 + 5
    assert isinstance(total, Sum)
    assert total.terms[0] is left.terms[0]                      # i*64: the same object, not rebuilt
    assert [t.render_str() for t in total.terms] == ["(i*64)", "(j*8)", "(k*8)", "8"]
    merged = left + j * 2                                       # j*8 + j*2: a new term
    assert [t.render_str() for t in merged.terms] == ["(i*64)", "(j*10)", "3"]
    assert merged.terms[0] is left.terms[0] and isinstance(merged.terms[1], Mul)
    assert (left + j * -8).render_str() == "((i*64)+3)" and (left - left).render_str() == "0"
    assert isinstance(left + -3 - i * 64 - j * 8, Num)


def test_an_expression_renders_its_text_once(monkeypatch):
    renders = []
    original = Mul._render

    def counted(self):
        renders.append(self)
        return original(self)
    monkeypatch.setattr(Mul, "_render", counted)
    i, j = Var("i", 0, 7), Var("j", 0, 7)
    index = i * 64 + j * 8
    for c in range(100):
        index + c + j * 8
    assert len(renders) <= 4, f"{len(renders)} renders of 2 products"
    assert symbolic.add(index, Num(1)).render_str() == "((i*64)+(j*8)+1)"
