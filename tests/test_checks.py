"""The shared parameter checks (labkit._checks): what passes, what is rejected, and how the error reads."""

from __future__ import annotations

import pytest

from labkit._checks import check_int, check_number, check_positive, is_number

INF, NAN = float("inf"), float("nan")


def test_is_number_excludes_bools_and_non_numbers() -> None:
    assert all(is_number(v) for v in (0, -3, 2.5, INF, NAN))
    assert not any(is_number(v) for v in (True, False, None, "1", [1]))


def test_check_int() -> None:
    assert check_int("n", 3, 1) == 3 and check_int("n", 8, 1, 8) == 8
    for bad, message in [(0, r"n must be an integer >= 1, got 0"), (2.0, r"n must be an integer >= 1, got 2\.0"),
                         (True, r"n must be an integer >= 1, got True"), ("2", r"n must be an integer >= 1")]:
        with pytest.raises(ValueError, match=message):
            check_int("n", bad, 1)
    with pytest.raises(ValueError, match=r"n must be an integer in 1\.\.8, got 9"):
        check_int("n", 9, 1, 8)


def test_check_number_is_finite_and_closed() -> None:
    assert check_number("x", 0, 0.0, 1.0) == 0.0 and isinstance(check_number("x", 1, 0.0, 1.0), float)
    assert check_number("x", 1e6, 0.0) == 1e6
    for bad in (INF, NAN, True, None):
        with pytest.raises(ValueError, match=r"x must be a finite number in \[0, 1\]"):
            check_number("x", bad, 0.0, 1.0)
    with pytest.raises(ValueError, match=r"x must be >= 0, got -0\.5"):
        check_number("x", -0.5, 0.0)


def test_check_positive_allows_infinity_not_nan() -> None:
    assert check_positive("t", 2) == 2.0 and check_positive("t", INF) == INF
    assert check_positive("e", 0, or_zero=True) == 0.0
    for bad in (0, -1.0, NAN, True, "1"):
        with pytest.raises(ValueError, match=r"t must be a number > 0"):
            check_positive("t", bad)
    with pytest.raises(ValueError, match=r"e must be a number >= 0, got -1"):
        check_positive("e", -1, or_zero=True)
