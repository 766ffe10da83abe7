"""Test support shipped with the package: the backend conformance suite and the WebHDFS test server."""
