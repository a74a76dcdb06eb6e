"""The human and machine descriptions of a release: ``datapackage.json``
(Frictionless v2), ``CITATION.cff``, ``README.md`` with the data dictionary,
``LICENSE`` and ``CHANGELOG.md``.  All are built from ``schemas.dataset``."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from schemas.dataset import SCHEMA_VERSION, TABLES, Column

FRICTIONLESS_TYPES = {
    "string": "string", "integer": "integer", "smallint": "integer", "number": "number",
    "boolean": "boolean",
    # A Parquet list of strings.  Table Schema's "array" would be the exact
    # word, but Frictionless reads Parquet through pandas, which hands lists
    # over as numpy arrays that its "array" check refuses; "any" validates and
    # the description says what the values are.
    "list": "any",
}
LICENSE_URLS = {
    "CC0-1.0": "https://creativecommons.org/publicdomain/zero/1.0/",
    "CC-BY-4.0": "https://creativecommons.org/licenses/by/4.0/",
}


@dataclass
class ReleaseInfo:
    """What the operator and the previous release say about this one."""

    version: str
    created: str  # ISO 8601 UTC
    title: str = "Phenosync phenology observations"
    publisher: str = "Phenosync"
    license: str = "CC-BY-4.0"
    url: str = ""  # where the release's files are served, if known
    grid_degrees: float = 0.1
    previous_version: str | None = None
    previous_changelog: str = ""
    schema_changes: list[str] = field(default_factory=list)

    @property
    def license_url(self) -> str:
        return LICENSE_URLS.get(self.license, self.license)

    @property
    def abstract(self) -> str:
        return (
            "Status reports of plant and animal life-cycle events (phenophases) by volunteers, "
            "with review status and quality flags as columns. Coordinates of obscured records "
            f"and sensitive taxa are generalised to a {self.grid_degrees:g} degree grid, private "
            "records have no coordinates, and observers appear as pseudonyms."
        )


def table_schema(columns: tuple[Column, ...]) -> dict[str, Any]:
    fields = []
    for c in columns:
        f: dict[str, Any] = {
            "name": c.name, "type": FRICTIONLESS_TYPES[c.type], "description": c.description,
        }
        if c.term:
            f["rdfType"] = c.term
        if not c.nullable and c.type != "list":
            f["constraints"] = {"required": True}
        fields.append(f)
    return {"fields": fields}


def resource(name: str, table: str, path: str, fmt: str, rows: int) -> dict[str, Any]:
    mediatype = {"parquet": "application/vnd.apache.parquet", "csv": "text/csv"}[fmt]
    return {
        "name": name, "type": "table", "path": path, "format": fmt, "mediatype": mediatype,
        "encoding": "utf-8", "table": table, "rows": rows,
        "schema": table_schema(TABLES[table]),
    }


def datapackage(info: ReleaseInfo, resources: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "$schema": "https://datapackage.org/profiles/2.0/datapackage.json",
        "name": "phenosync-observations",
        "title": info.title,
        "description": info.abstract,
        "version": info.version,
        "created": info.created,
        "licenses": [{"name": info.license, "path": info.license_url}],
        "contributors": [{"title": info.publisher, "roles": ["publisher"]}],
        "schemaVersion": SCHEMA_VERSION,
        "resources": resources,
    }


def table_columns(package: dict[str, Any]) -> dict[str, list[str]]:
    """Column names per table of a release, from its datapackage.json."""
    found: dict[str, list[str]] = {}
    for res in package.get("resources", []):
        columns = found.setdefault(res.get("table") or res["name"], [])
        columns.extend(f["name"] for f in res["schema"]["fields"] if f["name"] not in columns)
    return found


def citation(info: ReleaseInfo) -> str:
    return (
        "cff-version: 1.2.0\n"
        "message: If you use this dataset, please cite it as below.\n"
        "type: dataset\n"
        f"title: {json.dumps(info.title)}\n"
        f"version: {json.dumps(info.version)}\n"
        f"date-released: {info.created[:10]}\n"
        f"license: {info.license}\n"
        "authors:\n"
        f"  - name: {json.dumps(info.publisher)}\n"
        + (f"url: {json.dumps(info.url)}\n" if info.url else "")
        + f"abstract: {json.dumps(info.abstract)}\n"
    )


def citation_text(info: ReleaseInfo) -> str:
    """The citation in a sentence, as the README and the datasets page show it."""
    where = f" {info.url}" if info.url else ""
    return f"{info.publisher} ({info.created[:4]}). {info.title}, version {info.version}.{where}"


def _dictionary(table: str) -> str:
    lines = ["| column | type | may be empty | term | description |", "|---|---|---|---|---|"]
    for c in TABLES[table]:
        term = f"[{c.term.rsplit('/', 1)[-1]}]({c.term})" if c.term else ""
        lines.append(
            f"| `{c.name}` | {c.type} | {'yes' if c.nullable else 'no'} | {term} "
            f"| {c.description} |"
        )
    return "\n".join(lines)


def readme(info: ReleaseInfo, files: list[tuple[str, str]]) -> str:
    file_rows = "\n".join(f"| `{path}` | {what} |" for path, what in files)
    dictionaries = "\n\n".join(f"### {table}\n\n{_dictionary(table)}" for table in TABLES)
    return f"""# {info.title}, version {info.version}

Released {info.created} under {info.license} ({info.license_url}); each record
also carries its own license in the `license` column. Schema version
{SCHEMA_VERSION}.

{info.abstract}

## How to cite

{citation_text(info)}

(`CITATION.cff` holds the same in machine-readable form.)

## Files

| file | what |
|---|---|
{file_rows}

Observation files are Parquet (zstd), one per year, sorted by eventDate then
scientificName, with the dataset version, schema version and license in their
key-value metadata. Check the files with `sha256sum -c SHA256SUMS`.

## Load it

```python
import pandas as pd
df = pd.read_parquet("data/")            # every year
```

```sql
-- DuckDB
SELECT scientificName, year, min(startDayOfYear) AS onset
FROM 'data/observations-*.parquet'
WHERE phenophaseStatus = 'yes' GROUP BY ALL ORDER BY ALL;
```

```r
library(arrow)
df <- open_dataset("data/") |> dplyr::collect()
```

## Privacy

Observations the observer marked obscured, and every observation of a
sensitive taxon, have their coordinates moved to the centre of a
{info.grid_degrees:g} degree grid cell, with coordinateUncertaintyInMeters
widened to cover the cell (dataGeneralizations says so). Private observations
have no coordinates (informationWithheld says so). Observers appear as
pseudonyms that stay the same across releases. Free-text notes are published
only for projects that chose to.

## Quality

Nothing is filtered out for quality: every observation that is neither deleted
nor rejected by reviewers is here, with its review status
(identificationVerificationStatus) and the codes of its automatic quality
flags (qualityFlags). Observations withdrawn since the previous release are
listed in `retracted.csv`.

## Data dictionary

{dictionaries}
"""


def license_text(info: ReleaseInfo) -> str:
    return f"""This dataset, {info.title} version {info.version}, is made available under
the license {info.license}: {info.license_url}

You may share and adapt it, provided you give appropriate credit (see
CITATION.cff). Each record states its own license in the `license` column;
photos are listed with theirs in the media table, and only photos whose license
allows publication are listed.
"""


def changelog(info: ReleaseInfo, counts: dict[str, int]) -> str:
    lines = [f"## {info.version} ({info.created[:10]})", ""]
    lines.append(f"- {counts['observations']} observations, {counts['media']} photos.")
    if info.previous_version:
        lines.append(
            f"- {counts['retracted']} observations of {info.previous_version} retracted "
            "(see retracted.csv)."
        )
    else:
        lines.append("- First release.")
    lines.extend(f"- {change}" for change in info.schema_changes)
    entry = "\n".join(lines) + "\n"
    previous = info.previous_changelog
    if previous.startswith("# Changelog"):
        previous = previous.split("\n", 2)[2] if previous.count("\n") >= 2 else ""
    return "# Changelog\n\n" + entry + ("\n" + previous.lstrip("\n") if previous.strip() else "")


def write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
