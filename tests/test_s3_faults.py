"""put and get through S3 faults (via a fault-injecting proxy in front of moto): transient ones are
survived, persistent ones fail cleanly with one line, nothing is ever corrupted."""

import pytest

from cas.testing.s3_fault_matrix import FAULTS, run_matrix


@pytest.mark.parametrize("fault", FAULTS, ids=lambda f: f.name.replace(" ", "-"))
def test_s3_fault(s3_server, fault):
    rows = run_matrix(s3_server, trials=1, faults=[fault])
    for row in rows:
        assert row.as_expected, row
