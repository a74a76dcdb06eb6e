"""Photo benchmark: three figures, each a ratio measured in this run.

1. Derivative generation on 12-megapixel JPEGs (photos/s) against Pillow's
   best-case pipeline on the same images (draft-mode decode, thumbnail,
   encode; the same three sizes).  Goal >= 0.8x.
2. tus upload throughput against a plain streaming PUT of the same bytes to
   the same server (a route added to the app for this run).  Goal >= 0.7x.
3. Peak server RSS with 50 concurrent tus uploads of a 20 MB JPEG (noise
   at high quality: real photos, so that each upload completes, is checked
   and queued like any other), against 300 MB.  Goal < 1.0 (of the limit).

Run: ``.venv/bin/python bench/photo_bench.py [derivatives] [upload] [memory]``
(all three by default; about a minute).  The server runs without job workers
unless ``BENCH_WORKERS=1``: processing photos is the first figure, and a
worker processing the uploaded photos would compete with the uploads (and the
memory figure) for two cores.  Everything is generated locally; the server
runs on 127.0.0.1 with a throw-away data dir.
"""

from __future__ import annotations

import asyncio
import io
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from anyio import to_thread
from PIL import Image, ImageDraw
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from server import images  # noqa: E402

PHOTOS = 6
ROUNDS = 2
UPLOADS = 4
UPLOAD_ROUNDS = 5
CONCURRENT = 50
# A 20 MB JPEG: noise at quality 98 without chroma subsampling (about 3.2
# bytes a pixel), 2960 x 2220 pixels: 20 MiB.
BIG_SIZE = (2960, 2220)


def photo_12mp(seed: int) -> bytes:
    rng = random.Random(seed)
    base = Image.linear_gradient("L").resize((4000, 3000)).convert("RGB")
    draw = ImageDraw.Draw(base)
    for _ in range(40):
        x, y, r = rng.randrange(4000), rng.randrange(3000), rng.randrange(50, 600)
        draw.ellipse((x - r, y - r, x + r, y + r),
                     fill=(rng.randrange(256), rng.randrange(256), rng.randrange(256)))
    noise = Image.effect_noise((4000, 3000), 30).convert("RGB")
    out = io.BytesIO()
    Image.blend(base, noise, 0.25).save(out, "JPEG", quality=92)
    return out.getvalue()


def photo_20mb() -> bytes:
    rng = random.Random(1)
    width, height = BIG_SIZE
    noise = Image.frombytes("RGB", BIG_SIZE, rng.randbytes(width * height * 3))
    out = io.BytesIO()
    noise.save(out, "JPEG", quality=98, subsampling=0)
    return out.getvalue()


def pillow_best_case(data: bytes) -> None:
    """Only what the three derivatives need: draft-mode decode, in-place
    thumbnails (the same filter as ours), encode at the same quality."""
    with Image.open(io.BytesIO(data)) as im:
        im.draft("RGB", (max(images.DERIVATIVE_SIZES),) * 2)
        for edge in images.DERIVATIVE_SIZES:
            im.thumbnail((edge, edge), images.RESAMPLE)
            im.save(io.BytesIO(), "JPEG", quality=images.JPEG_QUALITY)


def ours(data: bytes) -> None:
    images.process(io.BytesIO(data), 60_000_000)


def compare(photos: list[bytes], rounds: int) -> tuple[float, float, list[float]]:
    """Photos/s of the peer and of ours, timed interleaved (peer, ours / ours,
    peer, alternating) so that load from other processes falls on both sides."""
    spent = {pillow_best_case: 0.0, ours: 0.0}
    per_round = []
    for n in range(rounds):
        before = dict(spent)
        for i, data in enumerate(photos):
            pair = (pillow_best_case, ours) if (n + i) % 2 == 0 else (ours, pillow_best_case)
            for work in pair:
                start = time.perf_counter()
                work(data)
                spent[work] += time.perf_counter() - start
        per_round.append((spent[pillow_best_case] - before[pillow_best_case])
                         / (spent[ours] - before[ours]))
    count = len(photos) * rounds
    return count / spent[pillow_best_case], count / spent[ours], per_round


# --- the server, with a plain streaming PUT beside tus -------------------------

def bench_app() -> Starlette:
    from server.app import create_app

    app = create_app()
    target = app.state.settings.data_dir / "plain"
    target.mkdir(exist_ok=True)

    async def put(request: Request) -> Response:
        """The peer: stream the body to a file; with ``?fsync=1`` (like for like
        with tus, which acknowledges an offset only once its bytes are on
        disk) sync it before answering."""
        size = 0
        with open(target / request.path_params["name"], "wb") as handle:  # noqa: ASYNC230
            async for chunk in request.stream():
                handle.write(chunk)
                size += len(chunk)
            if request.query_params.get("fsync") == "1":
                handle.flush()
                await to_thread.run_sync(os.fsync, handle.fileno())
        return Response(status_code=204, headers={"X-Size": str(size)})

    # The JSON body limit applies to this route: the run raises it (below).
    app.router.routes.insert(0, Route("/bench/put/{name}", put, methods=["PUT"]))
    return app


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def make_photos(env: dict[str, str], count: int) -> tuple[str, list[str]]:
    from server.database import Database
    from server.settings import Settings
    from tests.factories import make_user
    from tests.factories_photos import make_photo

    settings = Settings.from_env(env)
    database = Database(settings.database_url)
    await database.open()
    try:
        with database.context:
            await database.migrate()
            user, token = await make_user()
            ids = [(await make_photo(user)).id for _ in range(count)]
    finally:
        await database.close()
    return token, ids


def chunks(data: bytes, size: int = 256 * 1024):  # type: ignore[no-untyped-def]
    view = memoryview(data)
    for start in range(0, len(data), size):
        yield bytes(view[start : start + size])


async def achunks(data: bytes, size: int = 256 * 1024):  # type: ignore[no-untyped-def]
    view = memoryview(data)
    for start in range(0, len(data), size):
        yield bytes(view[start : start + size])


def tus_upload(client: httpx.Client, token: str, photo_id: str, data: bytes, *,
               with_creation: bool = False) -> int:
    """POST then PATCH (as tuspy does), or one POST with the body
    (creation-with-upload, as tus-js-client's ``uploadDataDuringCreation``)."""
    import base64

    headers = {"Tus-Resumable": "1.0.0", "Authorization": f"Bearer {token}"}
    meta = "photo_id " + base64.b64encode(photo_id.encode()).decode()
    body = {"Content-Type": "application/offset+octet-stream",
            "Content-Length": str(len(data))}
    if with_creation:
        r = client.post("/api/v1/uploads/", content=chunks(data), headers={
            **headers, **body, "Upload-Length": str(len(data)), "Upload-Metadata": meta})
        assert r.status_code == 201 and r.headers["Upload-Offset"] == str(len(data)), r.text
        return 204
    r = client.post("/api/v1/uploads/", headers={
        **headers, "Upload-Length": str(len(data)), "Upload-Metadata": meta})
    r.raise_for_status()
    r = client.patch(r.headers["Location"], content=chunks(data), headers={
        **headers, **body, "Upload-Offset": "0"})
    return r.status_code


async def atus_upload(client: httpx.AsyncClient, token: str, photo_id: str,
                      data: bytes) -> int:
    import base64

    headers = {"Tus-Resumable": "1.0.0", "Authorization": f"Bearer {token}"}
    meta = "photo_id " + base64.b64encode(photo_id.encode()).decode()
    r = await client.post("/api/v1/uploads/", headers={
        **headers, "Upload-Length": str(len(data)), "Upload-Metadata": meta})
    r.raise_for_status()
    r = await client.patch(r.headers["Location"], content=achunks(data), headers={
        **headers, "Upload-Offset": "0", "Content-Type": "application/offset+octet-stream",
        "Content-Length": str(len(data))})
    return r.status_code


def upload_figure(base: str, token: str, ids: list[str], payloads: list[bytes]) -> None:
    """Each photo sent four ways, interleaved, on one keep-alive connection:
    plain PUT with and without fsync, tus POST + PATCH, tus
    creation-with-upload.  The order is shuffled for each photo (seeded): a
    turning order would keep who follows whom fixed (tus always after the
    PUT without fsync, whose unsynced bytes the next sync may meet).  Each
    upload makes a new file, as tus does.  Each way is warmed up once,
    untimed: the first tus upload makes the uploads folder and loads the
    image checks, which no later one pays again."""
    spent = {"put": 0.0, "put-nosync": 0.0, "tus": 0.0, "tus-creation": 0.0}
    fresh = iter(ids)
    with httpx.Client(base_url=base, timeout=120) as client:
        def put(n: int, data: bytes, fsync: str) -> None:
            name = ("p" if fsync == "1" else "q") + str(n)  # a new file, not the other PUT's
            r = client.put(f"/bench/put/{name}?fsync={fsync}", content=chunks(data),
                           headers={"Content-Length": str(len(data))})
            assert r.status_code == 204, r.text

        ways = {
            "put": lambda n, data: put(n, data, "1"),
            "put-nosync": lambda n, data: put(n, data, "0"),
            "tus": lambda n, data: tus_upload(client, token, next(fresh), data),
            "tus-creation": lambda n, data: tus_upload(
                client, token, next(fresh), data, with_creation=True),
        }
        order = list(ways)
        for name in order:  # warm up each way once, untimed (first-use costs on both sides)
            assert ways[name](-1, payloads[0]) in (None, 204), name
        rng = random.Random(4)
        for n in range(UPLOAD_ROUNDS * len(payloads)):
            data = payloads[n % len(payloads)]
            order = rng.sample(order, len(order))
            for name in order:
                start = time.perf_counter()
                status = ways[name](n, data)
                spent[name] += time.perf_counter() - start
                assert status in (None, 204), (name, status)
    total = UPLOAD_ROUNDS * sum(map(len, payloads))
    rate = {name: total / took for name, took in spent.items()}
    print(f"upload: tus (POST + PATCH) {rate['tus'] / 1e6:.0f} MB/s vs plain streaming PUT "
          f"{rate['put'] / 1e6:.0f} MB/s -> ratio {rate['tus'] / rate['put']:.2f}x "
          "(goal >= 0.7x)")
    print(f"  tus creation-with-upload (one request, like the PUT) "
          f"{rate['tus-creation'] / 1e6:.0f} MB/s -> ratio "
          f"{rate['tus-creation'] / rate['put']:.2f}x")
    print(f"  like for like: {len(payloads)} JPEGs x {UPLOAD_ROUNDS} rounds, interleaved in a "
          "shuffled order, one "
          "keep-alive connection, 256 KiB client chunks; the PUT fsyncs before its 204 as tus "
          "does before acknowledging an offset (without fsync: "
          f"{rate['put-nosync'] / 1e6:.0f} MB/s, tus ratio "
          f"{rate['tus'] / rate['put-nosync']:.2f}x); tus also authenticates, checks the "
          "file is a whole image and queues its processing")


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM")


def main() -> None:
    print(f"generating {PHOTOS} 12-megapixel JPEGs ...", flush=True)
    photos = [photo_12mp(seed) for seed in range(PHOTOS)]
    print(f"  {sum(map(len, photos)) / len(photos) / 1e6:.1f} MB each on average")
    parts = set(sys.argv[1:]) or {"derivatives", "upload", "memory"}
    if "derivatives" in parts:
        derivatives(photos)
    if parts & {"upload", "memory"}:
        server_figures(photos, parts)


def derivatives(photos: list[bytes]) -> None:
    ours(photos[0])
    pillow_best_case(photos[0])  # warm up both
    baseline, mine, per_round = compare(photos, ROUNDS)
    print(f"derivatives: {mine:.2f} photos/s (sha256, EXIF, 3 sizes, orientation, sRGB, "
          f"dHash) vs Pillow best case {baseline:.2f} photos/s -> ratio "
          f"{mine / baseline:.2f}x (goal >= 0.8x; rounds "
          f"{', '.join(f'{r:.2f}' for r in per_round)})")
    print(f"  like for like: the same {len(photos)} JPEGs ({ROUNDS} rounds, interleaved), "
          f"sizes {images.DERIVATIVE_SIZES}, {images.RESAMPLE.name.lower()} resampling, "
          f"quality {images.JPEG_QUALITY}, one thread each")


def server_figures(photos: list[bytes], parts: set[str]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        workers = os.environ.get("BENCH_WORKERS", "0")
        print(f"server: SQLite, {workers} job workers (BENCH_WORKERS; processing the photos is "
              "the derivatives figure, and with workers it competes for the CPU)")
        env = {"PHENOSYNC_DATA_DIR": tmp, "PHENOSYNC_JOB_WORKERS": workers,
               "PHENOSYNC_LOG_LEVEL": "warning",
               "PHENOSYNC_MAX_BODY_BYTES": str(64 * 1024 * 1024)}
        token, ids = asyncio.run(
            make_photos(env, 2 * (UPLOADS * UPLOAD_ROUNDS + 1) + CONCURRENT))
        port = free_port()
        server = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "--factory", "photo_bench:bench_app",
             "--app-dir", str(ROOT / "bench"), "--host", "127.0.0.1", "--port", str(port),
             "--log-level", "warning", "--no-access-log"],
            env={**os.environ, **env}, cwd=ROOT,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            for _ in range(300):
                try:
                    if httpx.get(base + "/health").status_code == 200:
                        break
                except httpx.TransportError:
                    time.sleep(0.1)
            if "upload" in parts:
                upload_figure(base, token, ids, photos[:UPLOADS])
            if "memory" not in parts:
                return
            big = photo_20mb()

            async def many() -> list[int]:
                limits = httpx.Limits(max_connections=CONCURRENT)
                async with httpx.AsyncClient(base_url=base, timeout=300, limits=limits) as c:
                    return await asyncio.gather(*(
                        atus_upload(c, token, photo_id, big)
                        for photo_id in ids[-CONCURRENT:]
                    ))

            start = time.perf_counter()
            statuses = asyncio.run(many())
            took = time.perf_counter() - start
            peak = peak_rss_mb(server.pid)
            # Each completing PATCH answers 204 once the whole file was
            # streamed, synced and checked (a whole JPEG), and its processing
            # queued (no workers run it here).
            print(f"memory: {CONCURRENT} concurrent uploads of a {len(big) / 1e6:.1f} MB JPEG "
                  f"in {took:.1f} s (statuses {sorted(set(statuses))}); peak server RSS "
                  f"{peak:.0f} MB vs limit 300 MB -> ratio {peak / 300:.2f} (goal < 1.0)")
        finally:
            server.terminate()
            server.wait(10)


if __name__ == "__main__":
    main()
