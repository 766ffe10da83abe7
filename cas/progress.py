"""Progress bars (tqdm), silent when output is not a terminal."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

from tqdm import tqdm


@contextlib.contextmanager
def byte_bar(description: str, total: int, enabled: bool) -> Iterator[Callable[[int], None]]:
    """Yield an ``update(n_bytes)`` callback; a no-op when disabled or when stderr is not a TTY."""
    if not enabled:
        yield lambda _n: None
        return
    # disable=None: tqdm turns itself off when stderr is not a terminal (CI, pipes, logs).
    bar = tqdm(total=total, desc=description, unit="B", unit_scale=True, unit_divisor=1024, disable=None, leave=False)
    try:
        yield bar.update
    finally:
        bar.close()
