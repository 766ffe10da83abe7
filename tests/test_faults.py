"""put and get through WebHDFS faults: transient ones are survived, persistent ones fail cleanly,
and nothing is ever corrupted (the matrix behind docs/faults.md, one trial each)."""

import pytest

from cas.testing.fault_matrix import FAULTS, run_matrix


# A trickling body costs every read its whole deadline (tens of seconds a trial): it is in
# docs/faults.md, and tests/test_webhdfs_backend.py checks the deadline on a trickle directly.
@pytest.mark.parametrize("fault", [f for f in FAULTS if not f.slow], ids=lambda f: f.name.replace(" ", "-"))
def test_fault(webhdfs_server, fault):
    rows = run_matrix(webhdfs_server, trials=1, faults=[fault])
    for row in rows:
        assert row.as_expected, row
