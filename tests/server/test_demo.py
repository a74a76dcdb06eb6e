from __future__ import annotations

from starlette.applications import Starlette

from schemas.observation import ReviewStatus, Status
from server.demo import DEMO_PROJECT, database_is_empty, load_demo
from server.models.accounts import Membership, User
from server.models.observations import Observation
from server.models.reference import Phenophase, Project, Taxon
from server.models.review import ReviewDecision


async def test_demo_loads_a_realistic_dataset(db: Starlette) -> None:
    assert await database_is_empty()
    report = await load_demo(observations=300, seed=7)
    assert report.observations == await Observation.all().count() == 300
    assert await Taxon.all().count() >= 30
    assert await Phenophase.all().count() >= 15
    project = await Project.get(slug=DEMO_PROJECT)
    roles = {m.role for m in await Membership.filter(project=project)}
    assert roles == {"volunteer", "reviewer", "expert", "coordinator"}
    assert {u.role for u in await User.all()} == {"volunteer", "coordinator", "admin"}
    observations = await Observation.all().prefetch_related("phenophase", "taxon")
    years = {o.observed_at.year for o in observations}
    assert len(years) >= 3
    months = {o.observed_at.month for o in observations}
    assert len(months) >= 6, "spread over the seasons"
    assert {o.status for o in observations} >= {Status.YES, Status.NO}
    assert {o.review_status for o in observations} >= {ReviewStatus.VERIFIED,
                                                        ReviewStatus.NEEDS_REVIEW}
    for o in observations:
        assert o.phenophase.applies_to(o.taxon), (o.taxon.scientific_name, o.phenophase.code)
        assert project.contains(o.latitude, o.longitude)
        if o.intensity is not None:
            assert o.intensity in o.phenophase.intensity_codes()
    seqs = sorted(o.updated_seq for o in observations)
    assert len(set(seqs)) == len(seqs) and seqs[0] > 0
    assert await ReviewDecision.exists()
    assert not await database_is_empty()
