"""Byte sizes as people write them, and back: the one parser and formatters for the CLI, tools and bench.

Units follow the IEC/SI convention (as GNU coreutils does): ``KiB``/``MiB``/``GiB``/``TiB`` and the
bare letters ``K``/``M``/``G``/``T`` are powers of 1024; ``kB``/``KB``/``MB``/``GB``/``TB`` are powers
of 1000. So "4MiB" and "4M" are 4,194,304 bytes and "4MB" is 4,000,000. Case does not matter
("4mib" = "4MiB"), a fraction is fine as long as it comes to whole bytes ("1.5GiB"), and a bare
number is bytes.
"""

from __future__ import annotations

import re
from fractions import Fraction

KIB, MIB, GIB, TIB = 1 << 10, 1 << 20, 1 << 30, 1 << 40

_UNITS = {"": 1, "b": 1,
          "k": KIB, "kib": KIB, "m": MIB, "mib": MIB, "g": GIB, "gib": GIB, "t": TIB, "tib": TIB,
          "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12}
_SIZE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*")


def parse_size(text: str) -> int:
    """'4MiB' -> 4194304, '4MB' -> 4000000, '1.5K' -> 1536, '100' -> 100; ValueError otherwise."""
    m = _SIZE.fullmatch(text)
    if not m or m.group(2).lower() not in _UNITS:
        raise ValueError(f"not a size: {text!r} (use a byte count or a unit, e.g. 4MiB, 512KiB, 1GiB)")
    value = Fraction(m.group(1)) * _UNITS[m.group(2).lower()]
    if value.denominator != 1:
        raise ValueError(f"not a whole number of bytes: {text!r}")
    return int(value)


def format_size(n: int) -> str:
    """The exact size in the largest binary unit that divides it: 41943040 -> '40MiB', 1000 -> '1000B'.

    ``parse_size(format_size(n)) == n``; for labels, file names and reports that must be exact.
    """
    for unit, scale in (("TiB", TIB), ("GiB", GIB), ("MiB", MIB), ("KiB", KIB)):
        if n >= scale and n % scale == 0:
            return f"{n // scale}{unit}"
    return f"{n}B"


def human_bytes(n: int | float | None) -> str:
    """A size for people to read, rounded to one decimal: 41943040 -> '40.0 MiB'; None -> '-'."""
    if n is None:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"
