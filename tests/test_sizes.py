import pytest
from hypothesis import given, strategies as st

from cas.sizes import format_size, human_bytes, parse_size


def test_binary_and_decimal_units_mean_what_they_say():
    assert parse_size("4MiB") == parse_size("4M") == parse_size("4mib") == 4 << 20
    assert parse_size("4MB") == 4_000_000 and parse_size("512kB") == 512_000
    assert parse_size("512K") == 512 << 10 and parse_size("1.5GiB") == 3 << 29 and parse_size(" 100 ") == 100


@pytest.mark.parametrize("text", ["four", "", "4 XB", "-1", "1e3", "0.5", "1.0000001KiB"])
def test_not_a_size_is_a_value_error_naming_it(text):
    with pytest.raises(ValueError, match="not a"):
        parse_size(text)


@given(st.integers(min_value=0, max_value=1 << 50))
def test_format_size_is_exact(n):
    assert parse_size(format_size(n)) == n


def test_human_bytes_rounds_for_people():
    assert human_bytes(40 << 20) == "40.0 MiB" and human_bytes(12) == "12 B" and human_bytes(None) == "-"
