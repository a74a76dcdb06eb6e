"""A real S3-compatible server for the tests: moto's ``moto_server`` (an HTTP
server speaking the S3 API) in a child process on a loopback port.  Nothing in
the test process stands in for S3: boto3 talks HTTP to it as to any bucket."""

from __future__ import annotations

import secrets
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import httpx
from botocore.config import Config

from server.object_store import S3Storage

ACCESS_KEY = "phenosync-test"
SECRET_KEY = "phenosync-test-secret"
REGION = "us-east-1"


@dataclass
class S3Server:
    endpoint: str
    process: subprocess.Popen[bytes]
    _client: Any = None

    def client(self) -> Any:
        """One boto3 client (they are thread-safe, and slow to make)."""
        if self._client is None:
            self._client = boto3.session.Session().client(
                "s3", endpoint_url=self.endpoint, region_name=REGION,
                aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY,
                config=Config(s3={"addressing_style": "path"}),
            )
        return self._client

    def new_bucket(self) -> str:
        """An empty bucket of its own for one test."""
        name = f"test-{secrets.token_hex(6)}"
        self.client().create_bucket(Bucket=name)
        return name

    def storage(self, bucket: str, prefix: str = "media", **kwargs: Any) -> S3Storage:
        return S3Storage(self.client(), bucket, prefix, **kwargs)

    def env(self, bucket: str, prefix: str = "media") -> dict[str, str]:
        """The settings that put a server's media in ``bucket``."""
        return {
            "PHENOSYNC_MEDIA_URL": f"s3://{bucket}/{prefix}",
            "PHENOSYNC_S3_ENDPOINT_URL": self.endpoint,
            "PHENOSYNC_S3_REGION": REGION,
            "PHENOSYNC_S3_ACCESS_KEY_ID": ACCESS_KEY,
            "PHENOSYNC_S3_SECRET_ACCESS_KEY": SECRET_KEY,
        }

    def objects(self, bucket: str) -> dict[str, int]:
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=bucket)
        return {o["Key"]: o["Size"] for page in pages for o in page.get("Contents", [])}


def start_s3_server(port: int) -> S3Server:
    binary = Path(sys.executable).with_name("moto_server")
    assert binary.exists() or shutil.which("moto_server"), (
        "moto_server is needed: `make install-test` installs moto[server]"
    )
    process = subprocess.Popen(
        [str(binary if binary.exists() else "moto_server"), "-H", "127.0.0.1",
         "-p", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert process.poll() is None, "moto_server exited at start"
        try:
            httpx.get(endpoint + "/moto-api/", timeout=1)
            return S3Server(endpoint, process)
        except httpx.TransportError:
            time.sleep(0.1)
    process.kill()
    raise AssertionError("moto_server did not start")
