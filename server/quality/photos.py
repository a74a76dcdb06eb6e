"""The photo checks.  Their flags are written by photo processing (the photo
work: EXIF and perceptual hashes are known only once a photo is uploaded);
they are listed here so that the queue and the reviewer page explain them and
``run_checks`` leaves them alone."""

from __future__ import annotations

from server.quality.check import Check

EXIF_TIME = Check(
    "photo_exif_time_mismatch",
    "Photo taken at another time",
    "The time stored in the photo (EXIF) is far from the stated observation time. The photo "
    "may be from another day or year; compare the season shown in the photo.",
)
EXIF_LOCATION = Check(
    "photo_exif_location_mismatch",
    "Photo taken at another place",
    "The GPS position stored in the photo (EXIF) is far from the stated location. The "
    "record's coordinates or the photo may belong to another site.",
)
DUPLICATE = Check(
    "photo_duplicate",
    "Photo used before",
    "The same (or a nearly identical) photo is attached to another observation. A photo "
    "shows one moment: one of the records may be a copy.",
)
