"""``SHA256SUMS`` in the format ``sha256sum -c`` reads."""

from __future__ import annotations

import hashlib
from pathlib import Path

NAME = "SHA256SUMS"


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def write_sums(root: Path) -> dict[str, str]:
    """Hash every file under ``root`` (but the sums file) and write the sums file."""
    sums = {
        path.relative_to(root).as_posix(): file_sha256(path)
        for path in sorted(root.rglob("*"))
        if path.is_file() and path.name != NAME
    }
    (root / NAME).write_text("".join(f"{h}  {name}\n" for name, h in sums.items()))
    return sums
