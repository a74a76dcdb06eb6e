"""End to end with media in a bucket: a real server process configured with
``PHENOSYNC_MEDIA_URL=s3://…`` against a real S3-compatible server
(moto_server on a loopback port); a tus upload in several PATCHes, the photo
processed by the server's job worker, its derivative and original served."""

from __future__ import annotations

import asyncio
import io

import httpx
from PIL import Image
from starlette.applications import Starlette
from tusclient import client as tus

from schemas.observation import UploadState
from server.object_store import MIN_PART
from server.settings import Settings
from tests.factories import auth, make_user
from tests.factories_photos import make_photo, sha256
from tests.s3server import S3Server
from tests.server.test_tus_clients import LiveServer, noisy_jpeg, wait_ready


async def test_tus_upload_processing_and_serving_with_media_on_s3(
    db: Starlette, settings: Settings, s3_server: S3Server
) -> None:
    bucket = s3_server.new_bucket()
    env = {**s3_server.env(bucket, "site"), "PHENOSYNC_S3_PART_BYTES": str(MIN_PART)}
    server = LiveServer(settings, env=env)
    await asyncio.to_thread(server.start)
    try:
        user, token = await make_user()
        photo = await make_photo(user)
        data = noisy_jpeg((3000, 2000))  # more than one 5 MiB part
        assert len(data) > MIN_PART
        endpoint = server.base + "/api/v1/uploads/"

        def upload() -> None:
            c = tus.TusClient(endpoint, headers=auth(token))
            uploader = c.uploader(
                file_stream=io.BytesIO(data), chunk_size=2 * 1024 * 1024, upload_checksum=True,
                metadata={"photo_id": photo.id, "filetype": "image/jpeg",
                          "sha256": sha256(data)},
            )
            uploader.upload()

        await asyncio.to_thread(upload)
        ready = await wait_ready(photo.id, seconds=60)
        assert ready.upload_state == UploadState.READY and ready.sha256 == sha256(data)

        digest = sha256(data)
        objects = s3_server.objects(bucket)
        assert objects[f"site/originals/{digest}"] == len(data)
        assert {k for k in objects if k.startswith("site/derivatives/")} == {
            f"site/derivatives/{digest}/{size}.jpg" for size in ready.derivative_sizes or []
        }
        # The job deletes the upload's parts just after it commits READY.
        deadline = asyncio.get_running_loop().time() + 30
        while [k for k in objects if "uploads/" in k]:
            assert asyncio.get_running_loop().time() < deadline, objects
            await asyncio.sleep(0.1)
            objects = s3_server.objects(bucket)
        assert not (settings.media_dir / "originals" / digest).exists()

        async with httpx.AsyncClient(base_url=server.base, timeout=30) as c:
            small = await c.get(f"/api/v1/photos/{photo.id}/derivatives/320")
            assert small.status_code == 200, small.text
            assert small.headers["content-length"] == str(len(small.content))
            assert max(Image.open(io.BytesIO(small.content)).size) == 320
            original = await c.get(f"/api/v1/photos/{photo.id}/original", headers=auth(token))
            assert original.status_code == 200 and original.content == data
    finally:
        server.stop()
