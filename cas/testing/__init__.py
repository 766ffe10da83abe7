"""Test support shipped with the package: the backend conformance suite and the WebHDFS test server."""

import signal
import threading


def wait_until_stopped() -> None:
    """Block a test server's command line until Ctrl-C or SIGTERM."""
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    try:
        done.wait()
    except KeyboardInterrupt:
        pass
