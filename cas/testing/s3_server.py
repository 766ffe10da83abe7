"""An S3 server for tests and benchmarks: moto in server mode on loopback.

``S3TestServer`` wraps ``moto.server.ThreadedMotoServer`` (in this process, a real HTTP server
on 127.0.0.1, so the boto3 client under test goes through the network stack); ``reset`` clears
every bucket (``POST /moto-api/reset``). Needs ``moto[s3,server] >= 5.2.1`` (5.2.0 answers an
``If-None-Match: *`` PUT on an existing key with 500 instead of 412). moto accepts any
credentials; ``ensure_test_credentials`` sets dummy ones only when the AWS chain has none, so a
developer's real credentials (for ``CAS_TEST_S3_URL``) are left alone.

``python -m cas.testing.s3_server`` serves one from a shell and prints a store URL.
"""

from __future__ import annotations

import argparse
import logging
import os
import urllib.request
import uuid

from cas.testing import wait_until_stopped

__all__ = ["S3TestServer", "ensure_test_credentials", "main"]


def ensure_test_credentials() -> None:
    """Dummy AWS credentials for moto, unless the environment or ~/.aws already has some."""
    if os.environ.get("AWS_ACCESS_KEY_ID") or os.environ.get("AWS_PROFILE"):
        return
    shared = os.environ.get("AWS_SHARED_CREDENTIALS_FILE") or os.path.expanduser("~/.aws/credentials")
    if os.path.exists(shared):
        return
    os.environ["AWS_ACCESS_KEY_ID"] = "cas-test"
    os.environ["AWS_SECRET_ACCESS_KEY"] = "cas-test-secret"


class S3TestServer:
    """moto's S3 on 127.0.0.1 (any free port); a context manager."""

    def __init__(self, *, port: int = 0, region: str = "us-east-1") -> None:
        from moto.server import ThreadedMotoServer

        ensure_test_credentials()
        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one log line per request otherwise
        self.region = region
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        self.endpoint = ""

    def start(self) -> "S3TestServer":
        self._server.start()
        host, port = self._server.get_host_and_port()
        self.endpoint = f"http://{host}:{port}"
        return self

    def stop(self) -> None:
        self._server.stop()

    def __enter__(self) -> "S3TestServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def reset(self) -> None:
        """Forget every bucket and object."""
        request = urllib.request.Request(f"{self.endpoint}/moto-api/reset", method="POST", data=b"")
        with urllib.request.urlopen(request, timeout=30) as answer:
            answer.read()

    def client(self):
        """A plain boto3 client of this server, for checks that bypass the backend under test."""
        import boto3
        from botocore.config import Config

        return boto3.client("s3", endpoint_url=self.endpoint, region_name=self.region,
                            config=Config(s3={"addressing_style": "path"}, request_checksum_calculation="when_required",
                                          response_checksum_validation="when_required"))

    def make_bucket(self, bucket: str | None = None) -> str:
        bucket = bucket or f"cas-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=bucket)
        return bucket

    def store_url(self, bucket: str | None = None, prefix: str = "store", **query) -> str:
        """A store URL on this server (the bucket is created when not given)."""
        bucket = bucket or self.make_bucket()
        options = {"endpoint": self.endpoint, "region": self.region, "addressing": "path", **query}
        path = f"/{prefix}" if prefix else ""
        return f"s3://{bucket}{path}?" + "&".join(f"{k}={v}" for k, v in options.items())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m cas.testing.s3_server",
                                     description="Serve moto's S3 on 127.0.0.1 until Ctrl-C.")
    parser.add_argument("--port", type=int, default=0, help="port (default: any free port)")
    args = parser.parse_args(argv)
    with S3TestServer(port=args.port) as server:
        print(f"endpoint  {server.endpoint}", flush=True)
        print(f"store     {server.store_url()}", flush=True)
        wait_until_stopped()


if __name__ == "__main__":
    main()
