"""Progress bars (tqdm), silent when output is not a terminal."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator


@contextlib.contextmanager
def byte_bar(description: str, total: int, enabled: bool) -> Iterator[Callable[[int], None]]:
    """Yield an ``update(n_bytes)`` callback; a no-op when disabled or when stderr is not a TTY."""
    if not enabled or not sys.stderr.isatty():  # no bars in CI, pipes and logs
        yield lambda _n: None
        return
    from tqdm import tqdm  # imported only for a bar: ~19 ms of every cas command otherwise

    bar = tqdm(total=total, desc=description, unit="B", unit_scale=True, unit_divisor=1024, disable=None, leave=False)
    try:
        yield bar.update
    finally:
        bar.close()
