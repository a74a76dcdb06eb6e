"""Photo processing: quality flags from EXIF and duplicates."""

from __future__ import annotations

import httpx
from starlette.applications import Starlette

from schemas.observation import UploadState
from server.models.accounts import User
from server.models.observations import Observation, Photo, QualityFlag
from server.models.uploads import Upload
from server.photos import process_upload
from server.quality.check import distance_m
from tests.factories import make_user
from tests.factories_photos import jpeg, make_observation, make_photo, run_jobs, sha256
from tests.server.test_uploads import upload_file


async def attach(client: httpx.AsyncClient, db: Starlette, user: User, token: str,
                 data: bytes, observation: Observation | None = None) -> Photo:
    photo = await make_photo(user, observation)
    assert (await upload_file(client, token, photo.id, data)).status_code == 204
    await run_jobs(db)
    return await Photo.get(id=photo.id)


async def codes(observation_id: str) -> set[str]:
    return set(await QualityFlag.filter(observation_id=observation_id)
               .values_list("code", flat=True))  # type: ignore[arg-type]


async def test_exif_time_and_place_far_from_the_observation_are_flagged(
    client: httpx.AsyncClient, db: Starlette
) -> None:
    user, token = await make_user()
    observation = await make_observation(user)
    before = observation.updated_seq
    # Taken two days earlier, in Amsterdam (about 35 km from Utrecht).
    photo = await attach(client, db, user, token,
                         jpeg(taken="2024:03:30 10:00:00", lat=52.37, lon=4.90), observation)
    assert await codes(observation.id) == {"photo_exif_time_mismatch",
                                           "photo_exif_location_mismatch"}
    flagged = await Observation.get(id=observation.id)
    assert flagged.flag_count == 2 and flagged.updated_seq > before
    place = await QualityFlag.get(observation_id=observation.id,
                                  code="photo_exif_location_mismatch")
    assert place.details and place.details["photo_id"] == photo.id
    assert 30_000 < place.details["distance_m"] < 40_000


async def test_close_enough_is_not_flagged_and_time_without_offset_uses_the_observers(
    client: httpx.AsyncClient, db: Starlette
) -> None:
    user, token = await make_user()
    observation = await make_observation(user)  # 2024-04-01 08:00 UTC, offset +120 min
    # 23 h later by the observer's clock (no OffsetTimeOriginal), 3 km away.
    await attach(client, db, user, token,
                 jpeg(taken="2024:04:02 09:00:00", offset=None, lat=52.117, lon=5.12),
                 observation)
    assert await codes(observation.id) == set()
    assert (await Observation.get(id=observation.id)).flag_count == 0


async def test_the_same_file_on_another_observation_is_a_duplicate(
    client: httpx.AsyncClient, db: Starlette
) -> None:
    user, token = await make_user()
    data = jpeg(seed=7)
    first = await attach(client, db, user, token, data)
    second = await attach(client, db, user, token, data)
    assert first.sha256 == second.sha256 and first.storage_key == second.storage_key
    assert await codes(first.observation_id) == set()  # type: ignore[attr-defined]
    flag = await QualityFlag.get(observation_id=second.observation_id)  # type: ignore[attr-defined]
    assert flag.code == "photo_duplicate"
    assert flag.details == {"photo_id": second.id, "other_photo_id": first.id,
                            "other_observation_id": first.observation_id,  # type: ignore[attr-defined]
                            "match": "exact", "distance_bits": 0}


async def test_a_resized_recompressed_copy_is_a_near_duplicate(
    client: httpx.AsyncClient, db: Starlette
) -> None:
    user, token = await make_user()
    other_user, other_token = await make_user()
    await attach(client, db, user, token, jpeg(size=(1600, 1200), seed=11, quality=92))
    copy = await attach(client, db, other_user, other_token,
                        jpeg(size=(1200, 900), seed=11, quality=55))
    flag = await QualityFlag.get(observation_id=copy.observation_id)  # type: ignore[attr-defined]
    assert flag.code == "photo_duplicate" and flag.details
    assert flag.details["match"] == "perceptual"
    unrelated = await attach(client, db, user, token, jpeg(size=(1600, 1200), seed=12))
    assert await codes(unrelated.observation_id) == set()  # type: ignore[attr-defined]


async def test_two_photos_of_one_observation_are_not_duplicates(
    client: httpx.AsyncClient, db: Starlette
) -> None:
    user, token = await make_user()
    observation = await make_observation(user)
    await attach(client, db, user, token, jpeg(seed=5), observation)
    await attach(client, db, user, token, jpeg(seed=5), observation)
    assert await codes(observation.id) == set()


def test_distance() -> None:
    assert abs(distance_m(52.09, 5.12, 52.37, 4.90) - 34_400) < 500


async def test_a_job_run_again_after_the_photo_was_attached_deletes_the_upload_bytes(
    client: httpx.AsyncClient, db: Starlette
) -> None:
    """A worker that dies between attaching the photo (commit) and deleting
    the upload's bytes leaves them behind; its job is claimed again and must
    finish the cleanup, not skip it."""
    user, token = await make_user()
    photo = await make_photo(user)
    data = jpeg()
    assert (await upload_file(client, token, photo.id, data)).status_code == 204
    upload = await Upload.get(photo_id=photo.id)
    assert await run_jobs(db) == 1
    storage = db.state.storage
    assert await storage.size(upload.storage_key) is None
    await storage.put(upload.storage_key, data)  # as the dead worker left it
    await process_upload({"upload_id": upload.id}, storage=storage,
                         max_pixels=db.state.settings.max_image_pixels)
    assert await storage.size(upload.storage_key) is None
    ready = await Photo.get(id=photo.id)
    assert ready.upload_state == UploadState.READY and ready.sha256 == sha256(data)
    assert await storage.size(ready.storage_key) == len(data)
