"""Real tus clients against a real server: tuspy (Python) and tus-js-client
(Node), talking HTTP to uvicorn on a loopback port; and a server killed
mid-upload that is restarted and resumed."""

from __future__ import annotations

import asyncio
import io
import json
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from PIL import Image
from starlette.applications import Starlette
from tusclient import client as tus

from schemas.observation import UploadState
from server.models.observations import Photo
from server.settings import Settings
from tests.factories import auth, make_user
from tests.factories_photos import jpeg, make_photo, sha256
from tests.servers import ServerProcess

ROOT = Path(__file__).resolve().parents[2]
NODE_DIR = ROOT / "tests" / "node"


class LiveServer(ServerProcess):
    """The app under uvicorn in a child process, with the test session's
    database and data dir and one job worker."""

    def __init__(self, settings: Settings, env: dict[str, str] | None = None) -> None:
        super().__init__({
            "PHENOSYNC_DATA_DIR": str(settings.data_dir),
            "PHENOSYNC_DATABASE_URL": settings.database_url,
            "PHENOSYNC_JOB_WORKERS": "1",
            **(env or {}),
        })

    def start(self, timeout: float = 30) -> float:
        return super().start(timeout)


@pytest.fixture
def live(db: Starlette, settings: Settings) -> Iterator[LiveServer]:
    server = LiveServer(settings)
    server.start()
    try:
        yield server
    finally:
        server.stop()


async def wait_ready(photo_id: str, seconds: float = 20) -> Photo:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        photo = await Photo.get(id=photo_id)
        if photo.upload_state in (UploadState.READY, UploadState.FAILED):
            return photo
        await asyncio.sleep(0.1)
    raise AssertionError(f"photo {photo_id} was not processed in {seconds} s")


def noisy_jpeg(size: tuple[int, int] = (1400, 1000)) -> bytes:
    """A photo that does not compress much (about 1 MB)."""
    out = io.BytesIO()
    Image.effect_noise(size, 64).convert("RGB").save(out, "JPEG", quality=95)
    return out.getvalue()


async def test_tuspy_small_chunks_stop_resume_and_checksum(live: LiveServer) -> None:
    user, token = await make_user()
    photo = await make_photo(user)
    data = jpeg(size=(1600, 1200), seed=21)
    endpoint = live.base + "/api/v1/uploads/"

    def first_half() -> tuple[str, int]:
        c = tus.TusClient(endpoint, headers=auth(token))
        uploader = c.uploader(
            file_stream=io.BytesIO(data), chunk_size=16 * 1024, upload_checksum=True,
            metadata={"photo_id": photo.id, "filetype": "image/jpeg",
                      "filename": "IMG_0001.JPG", "sha256": sha256(data)},
        )
        uploader.upload(stop_at=len(data) // 2)
        return str(uploader.url), int(uploader.offset)

    url, offset = await asyncio.to_thread(first_half)
    assert url.startswith(endpoint) and len(data) // 2 <= offset < len(data)
    assert (await Photo.get(id=photo.id)).upload_state == UploadState.UPLOADING

    def resume() -> int:
        # A new client, as after the app was restarted: it asks where to go on.
        c = tus.TusClient(endpoint, headers=auth(token))
        uploader = c.uploader(file_stream=io.BytesIO(data), url=url, chunk_size=16 * 1024,
                              upload_checksum=True)
        start = int(uploader.offset)
        uploader.upload()
        return start

    assert await asyncio.to_thread(resume) == offset
    ready = await wait_ready(photo.id)
    assert ready.upload_state == UploadState.READY and ready.sha256 == sha256(data)


async def node(*args: str) -> dict[str, object]:
    assert shutil.which("node"), "node is needed (`make test` installs the client with npm ci)"
    assert (NODE_DIR / "node_modules" / "tus-js-client").exists(), "run `make node-deps`"
    process = await asyncio.create_subprocess_exec(
        "node", str(NODE_DIR / "upload.mjs"), *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, (out.decode(), err.decode())
    return dict(json.loads(out.decode().strip().splitlines()[-1]))


async def test_tus_js_client_buffer_upload_during_creation(
    live: LiveServer, tmp_path: Path
) -> None:
    user, token = await make_user()
    photo = await make_photo(user)
    data = jpeg(seed=22)
    (tmp_path / "photo.jpg").write_bytes(data)
    result = await node(json.dumps({
        "endpoint": live.base + "/api/v1/uploads/", "token": token, "photoId": photo.id,
        "file": str(tmp_path / "photo.jpg"), "mode": "during-creation",
        "chunkSize": 1024 * 1024,
    }))
    assert result["ok"] is True
    ready = await wait_ready(photo.id)
    assert ready.upload_state == UploadState.READY and ready.sha256 == sha256(data)


async def test_tus_js_client_abort_mid_way_and_resume(live: LiveServer, tmp_path: Path) -> None:
    user, token = await make_user()
    photo = await make_photo(user)
    data = noisy_jpeg((900, 700))
    (tmp_path / "photo.jpg").write_bytes(data)
    result = await node(json.dumps({
        "endpoint": live.base + "/api/v1/uploads/", "token": token, "photoId": photo.id,
        "file": str(tmp_path / "photo.jpg"), "mode": "abort-resume", "chunkSize": 32 * 1024,
    }))
    assert result["ok"] is True, result
    offset = result["offsetAfterAbort"]
    # Aborted while a chunk was in flight: the server kept what it had stored.
    assert isinstance(offset, int) and len(data) // 4 <= offset < len(data)
    assert result["resumedFrom"] is not None and result["resumedFrom"] >= offset  # type: ignore[operator]
    ready = await wait_ready(photo.id)
    assert ready.upload_state == UploadState.READY and ready.sha256 == sha256(data)


async def test_server_killed_mid_upload_resumes_after_restart(
    db: Starlette, settings: Settings
) -> None:
    user, token = await make_user()
    photo = await make_photo(user)
    data = noisy_jpeg()
    server = LiveServer(settings)
    await asyncio.to_thread(server.start)
    endpoint = server.base + "/api/v1/uploads/"
    try:
        def first_part() -> str:
            c = tus.TusClient(endpoint, headers=auth(token))
            uploader = c.uploader(file_stream=io.BytesIO(data), chunk_size=64 * 1024,
                                  metadata={"photo_id": photo.id})
            uploader.upload(stop_at=len(data) // 4)
            return str(uploader.url)

        url = await asyncio.to_thread(first_part)
        head = {"Tus-Resumable": "1.0.0", **auth(token)}
        async with httpx.AsyncClient() as c:
            before = int((await c.head(url, headers=head)).headers["Upload-Offset"])

        # A slow PATCH of the rest is under way when the server is killed.
        sent = threading.Event()

        def slow_body() -> Iterator[bytes]:
            for start in range(before, len(data), 32 * 1024):
                yield data[start : start + 32 * 1024]
                if start - before > 256 * 1024:
                    sent.set()
                time.sleep(0.1)

        def slow_patch() -> None:
            try:
                httpx.patch(url, content=slow_body(), timeout=30, headers={
                    **head, "Content-Type": "application/offset+octet-stream",
                    "Upload-Offset": str(before)})
            except httpx.TransportError:
                pass  # the server died under it

        writer = threading.Thread(target=slow_patch)
        writer.start()
        await asyncio.to_thread(sent.wait, 20)
        await asyncio.sleep(1.2)  # past one progress record
        server.kill()
        writer.join(30)

        await asyncio.to_thread(server.start)  # same database, media dir and port
        async with httpx.AsyncClient() as c:
            after = int((await c.head(url, headers=head)).headers["Upload-Offset"])
        assert before < after < len(data)  # progress of the killed PATCH was kept

        def resume() -> None:
            # The dead writer's lease runs out within seconds: tuspy retries 423.
            c = tus.TusClient(endpoint, headers=auth(token))
            uploader = c.uploader(file_stream=io.BytesIO(data), url=url,
                                  chunk_size=128 * 1024, retries=20, retry_delay=1)
            assert uploader.offset == after
            uploader.upload()

        await asyncio.to_thread(resume)
        ready = await wait_ready(photo.id)
        assert ready.upload_state == UploadState.READY and ready.sha256 == sha256(data)
    finally:
        server.stop()


