"""The published dataset's columns: the contract with scientists.

Each table of a release is described here once, as data: column name, type,
whether it may be empty, a description, and the Darwin Core term it is, where
one exists.  ``exports`` builds the pinned Arrow schemas, ``datapackage.json``
(Frictionless Table Schemas), the README's data dictionary and the Darwin
Core Archive's ``meta.xml`` from these lists, so they cannot drift apart.

Semantic versions of releases follow this contract: removing or renaming a
column is a major change, adding one is a minor change
(``exports.version``).  ``SCHEMA_VERSION`` is the version of these lists.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Version of the column lists below; bump with every change of a table.
SCHEMA_VERSION = "1.0.0"

DWC = "http://rs.tdwg.org/dwc/terms/"
DCTERMS = "http://purl.org/dc/terms/"
AC = "http://rs.tdwg.org/ac/terms/"

#: Column types, named as Frictionless Table Schema types, plus ``list`` (a
#: list of strings) which Frictionless calls ``array``.
TYPES = ("string", "integer", "smallint", "number", "boolean", "list")


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    description: str
    nullable: bool = False
    term: str | None = None  # the IRI of the Darwin Core (or other) term


def _dwc(name: str, type: str, description: str, nullable: bool = False) -> Column:
    return Column(name, type, description, nullable, DWC + name)


OBSERVATIONS: tuple[Column, ...] = (
    _dwc("occurrenceID", "string",
         "Stable id of the observation (the id the app generated); never reused."),
    _dwc("basisOfRecord", "string", "Always HumanObservation."),
    _dwc("eventDate", "string",
         "When the observer looked, ISO 8601 in the observer's local time with its UTC offset."),
    _dwc("year", "smallint", "Year of eventDate (local time)."),
    _dwc("startDayOfYear", "smallint", "Day of year of eventDate (local time), 1 to 366."),
    _dwc("decimalLatitude", "number",
         "Latitude, WGS84. Generalised for obscured records and sensitive taxa; empty for "
         "private records.", nullable=True),
    _dwc("decimalLongitude", "number",
         "Longitude, WGS84. Generalised like decimalLatitude.", nullable=True),
    _dwc("coordinateUncertaintyInMeters", "number",
         "Radius around the point that holds the true location; widened to cover the grid "
         "cell for generalised records.", nullable=True),
    _dwc("geodeticDatum", "string", "Always EPSG:4326 (WGS84)."),
    _dwc("scientificName", "string",
         "Taxon observed; a reviewer's correction replaces the observer's choice."),
    _dwc("taxonRank", "string", "Rank of scientificName, e.g. species."),
    _dwc("recordedBy", "string",
         "Observer as a pseudonym (keyed HMAC of the account), stable across releases."),
    _dwc("identificationVerificationStatus", "string",
         "Review status: pending, auto_accepted, needs_review, needs_info or verified."),
    Column("qualityFlags", "list",
           "Codes of the automatic quality checks that doubted the record; empty when none.",
           False, None),
    _dwc("license", "string", "License of the record (SPDX id)."),
    Column("rightsHolder", "string", "Holder of the rights: the observer's pseudonym.",
           False, DCTERMS + "rightsHolder"),
    _dwc("informationWithheld", "string",
         "What was left out, e.g. coordinates of a private record.", nullable=True),
    _dwc("dataGeneralizations", "string",
         "How the record was generalised, e.g. coordinates snapped to a 0.1 degree grid.",
         nullable=True),
    Column("modified", "string", "Last change of the record on the server, ISO 8601 UTC.",
           False, DCTERMS + "modified"),
    Column("phenophase", "string", "Name of the phenophase looked for.", False, None),
    Column("phenophaseID", "string",
           "Code of the phenophase (see phenophases.csv for its definition and PPO IRI).",
           False, None),
    Column("phenophaseStatus", "string",
           "yes (seen), no (looked, not seen) or unknown.", False, None),
    Column("intensity", "string", "Intensity class code, when one was given.", True, None),
    _dwc("occurrenceRemarks", "string",
         "The observer's notes, only for projects that publish them.", nullable=True),
)

MEDIA: tuple[Column, ...] = (
    Column("mediaID", "string", "Stable id of the photo.", False, DCTERMS + "identifier"),
    _dwc("occurrenceID", "string", "The observation the photo belongs to."),
    Column("type", "string", "Always StillImage.", False, DCTERMS + "type"),
    Column("format", "string", "Media type of the derivative, image/jpeg.", False,
           DCTERMS + "format"),
    Column("identifier", "string", "URL of the 1024 px derivative (no EXIF).", False,
           AC + "accessURI"),
    Column("thumbnailURL", "string", "URL of the 320 px derivative.", False,
           AC + "thumbnailAccessURI"),
    Column("largeURL", "string", "URL of the 2048 px derivative.", False, None),
    Column("license", "string", "License of the photo (SPDX id).", False, DCTERMS + "license"),
    Column("rightsHolder", "string", "The photographer's pseudonym.", False,
           DCTERMS + "rightsHolder"),
)

TAXA: tuple[Column, ...] = (
    _dwc("scientificName", "string", "Scientific name."),
    _dwc("taxonRank", "string", "Rank."),
    Column("vernacularNameNL", "string", "Dutch name.", True, None),
    Column("vernacularNameEN", "string", "English name.", True, None),
    Column("group", "string", "Group (tree, shrub, herb, bird, insect, amphibian).", False, None),
    Column("sensitive", "boolean",
           "Whether locations of this taxon are always published generalised.", False, None),
)

PHENOPHASES: tuple[Column, ...] = (
    Column("phenophaseID", "string", "Code of the phenophase.", False, None),
    Column("phenophase", "string", "Name.", False, None),
    Column("definition", "string", "What the observer looks for.", False, None),
    Column("ppoIRI", "string", "Plant Phenology Ontology term, where one exists.", True, None),
    Column("groups", "string", "Taxon groups it applies to, separated by |.", False, None),
)

PHENOMETRICS: tuple[Column, ...] = (
    Column("siteID", "string",
           "The published location (generalised where needed) as 'latitude,longitude'.",
           False, None),
    _dwc("decimalLatitude", "number", "Published latitude of the site."),
    _dwc("decimalLongitude", "number", "Published longitude of the site."),
    _dwc("scientificName", "string", "Taxon."),
    Column("phenophaseID", "string", "Phenophase code.", False, None),
    _dwc("year", "smallint", "Year."),
    Column("firstYesDayOfYear", "smallint", "Day of year of the first yes.", False, None),
    Column("lastYesDayOfYear", "smallint", "Day of year of the last yes.", False, None),
    Column("numYesRecords", "integer", "Number of yes records.", False, None),
    Column("numDaysSincePriorNo", "smallint",
           "Days between the last no before the first yes and the first yes; empty when no "
           "no was recorded before it (the onset is then uncertain).", True, None),
    Column("numDaysUntilNextNo", "smallint",
           "Days between the last yes and the first no after it; empty when none.", True, None),
)

RETRACTED: tuple[Column, ...] = (
    _dwc("occurrenceID", "string",
         "An observation published in the previous release and withdrawn since "
         "(deleted by its observer or rejected by reviewers)."),
)

#: Every table, by the name its files and its Frictionless resource carry.
TABLES: dict[str, tuple[Column, ...]] = {
    "observations": OBSERVATIONS,
    "media": MEDIA,
    "taxa": TAXA,
    "phenophases": PHENOPHASES,
    "phenometrics": PHENOMETRICS,
    "retracted": RETRACTED,
}


def column_names(table: str) -> list[str]:
    return [c.name for c in TABLES[table]]
