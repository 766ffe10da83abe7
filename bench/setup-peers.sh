#!/usr/bin/env bash
# The peers bench/peers.py compares cas with (Debian packages), and GNU time for their peak RSS.
# For the benchmark machine only: CI does not run them (their tests skip when they are missing).
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
apt-get update
apt-get install -y restic borgbackup casync time
restic version
borg --version
casync --version
