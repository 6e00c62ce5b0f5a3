from studio.core.errors import first_line


def test_first_line_is_what_a_person_sees_of_an_error():
    assert first_line(RuntimeError("bad thing\n  at frame 3")) == "bad thing"
    assert first_line(KeyError()) == "KeyError"
    assert first_line("x" * 500, limit=10) == "x" * 9 + "…"
