"""A Darwin Core Archive for GBIF: an occurrence core, a MeasurementOrFact
extension for phenophase status and intensity, ``meta.xml`` and ``eml.xml``.

Rows are appended to CSV files as batches arrive and zipped at the end
(``zipfile`` streams them from disk), so memory stays flat.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from schemas.dataset import DWC, OBSERVATIONS

#: Core columns: the observation columns that are Darwin Core or Dublin Core terms.
CORE = [c for c in OBSERVATIONS if c.term]
MOF_COLUMNS = [
    ("occurrenceID", DWC + "occurrenceID"),
    ("measurementID", DWC + "measurementID"),
    ("measurementType", DWC + "measurementType"),
    ("measurementTypeID", DWC + "measurementTypeID"),
    ("measurementValue", DWC + "measurementValue"),
    ("measurementRemarks", DWC + "measurementRemarks"),
]
_CSV = pacsv.WriteOptions(include_header=True, quoting_style="needed")


class DarwinCoreArchive:
    def __init__(self, workdir: Path, ppo_iris: dict[str, str | None]) -> None:
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.core_path = workdir / "occurrence.txt"
        self.mof_path = workdir / "measurementorfact.txt"
        core_schema = pa.schema([(c.name, pa.float64() if c.type == "number" else (
            pa.int16() if c.type == "smallint" else pa.string())) for c in CORE])
        self._core = pacsv.CSVWriter(self.core_path, core_schema, write_options=_CSV)
        self._mof = pacsv.CSVWriter(
            self.mof_path, pa.schema([(n, pa.string()) for n, _ in MOF_COLUMNS]),
            write_options=_CSV,
        )
        self._codes = pa.array(list(ppo_iris), pa.string())
        self._iris = pa.array(list(ppo_iris.values()), pa.string())
        self.rows = 0

    def add(self, batch: pa.RecordBatch) -> None:
        if not batch.num_rows:
            return
        self._core.write_batch(batch.select([c.name for c in CORE]))
        ids = batch["occurrenceID"]
        phase = batch["phenophase"]
        iri = pc.take(self._iris, pc.index_in(batch["phenophaseID"], value_set=self._codes))
        status = pa.record_batch(
            [ids, pc.binary_join_element_wise(ids, "status", ":"),
             pc.binary_join_element_wise("phenophase status: ", phase, ""), iri,
             batch["phenophaseStatus"], phase],
            names=[n for n, _ in MOF_COLUMNS],
        )
        self._mof.write_batch(status)
        has = pc.is_valid(batch["intensity"])
        if pc.any(has).as_py():
            sub = batch.filter(has)
            sub_ids = sub["occurrenceID"]
            intensity = pa.record_batch(
                [sub_ids, pc.binary_join_element_wise(sub_ids, "intensity", ":"),
                 pc.binary_join_element_wise("intensity: ", sub["phenophase"], ""),
                 pa.nulls(sub.num_rows, pa.string()), sub["intensity"], sub["phenophase"]],
                names=[n for n, _ in MOF_COLUMNS],
            )
            self._mof.write_batch(intensity)
        self.rows += batch.num_rows

    def finish(self, target: Path, eml: str) -> None:
        self._core.close()
        self._mof.close()
        with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
            archive.writestr("meta.xml", meta_xml())
            archive.writestr("eml.xml", eml)
            archive.write(self.core_path, "occurrence.txt")
            archive.write(self.mof_path, "measurementorfact.txt")
        self.core_path.unlink()
        self.mof_path.unlink()
        self.workdir.rmdir()


def _fields(terms: list[str], core: bool) -> str:
    lines = []
    if core:
        lines.append('    <id index="0"/>')
    else:
        lines.append('    <coreid index="0"/>')
    for index, term in enumerate(terms):
        lines.append(f"    <field index=\"{index}\" term={quoteattr(term)}/>")
    return "\n".join(lines)


def meta_xml() -> str:
    attrs = ('encoding="UTF-8" fieldsTerminatedBy="," linesTerminatedBy="\\n" '
             'fieldsEnclosedBy="&quot;" ignoreHeaderLines="1"')
    core_terms = [c.term or "" for c in CORE]
    mof_terms = [t for _, t in MOF_COLUMNS]
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<archive xmlns="http://rs.tdwg.org/dwc/text/" metadata="eml.xml">
  <core rowType="http://rs.tdwg.org/dwc/terms/Occurrence" {attrs}>
    <files><location>occurrence.txt</location></files>
{_fields(core_terms, True)}
  </core>
  <extension rowType="http://rs.tdwg.org/dwc/terms/MeasurementOrFact" {attrs}>
    <files><location>measurementorfact.txt</location></files>
{_fields(mof_terms, False)}
  </extension>
</archive>
"""


def eml_xml(
    *, title: str, version: str, abstract: str, publisher: str, license_url: str, created: str
) -> str:
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<eml:eml xmlns:eml="eml://ecoinformatics.org/eml-2.1.1" packageId={quoteattr(version)}
         system="phenosync" xml:lang="en">
  <dataset>
    <title>{escape(title)} {escape(version)}</title>
    <creator><organizationName>{escape(publisher)}</organizationName></creator>
    <pubDate>{escape(created[:10])}</pubDate>
    <language>en</language>
    <abstract><para>{escape(abstract)}</para></abstract>
    <intellectualRights><para>{escape(license_url)}</para></intellectualRights>
    <contact><organizationName>{escape(publisher)}</organizationName></contact>
  </dataset>
</eml:eml>
"""
