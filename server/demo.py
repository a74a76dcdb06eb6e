"""Demo data: the shipped vocabulary, a demo project, users of every role and a
few hundred realistic observations over several years and seasons.

Deterministic for a given seed, so screenshots and docs stay stable.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from tortoise.transactions import in_transaction

from schemas import vocabulary
from schemas.observation import Decision, Geoprivacy, ReviewStatus, Status
from schemas.roles import GlobalRole, ProjectRole
from server.models.accounts import Membership, User
from server.models.observations import Observation
from server.models.reference import Phenophase, Project, ProjectTaxon, Taxon
from server.models.review import ReviewDecision
from server.models.sequence import next_seq
from server.passwords import hash_password_sync
from server.quality import run_checks
from server.vocabulary import load_vocabulary

DEMO_PASSWORD = "phenosync-demo"
DEMO_PROJECT = "natuurkalender-demo"
YEARS = (2022, 2023, 2024, 2025)
# Warm springs come early: a per-year shift of onset, in days.
YEAR_SHIFT = {2022: -3, 2023: 1, 2024: -7, 2025: -2}

# (global role, project role) per demo user.
DEMO_USERS = {
    "demo-volunteer": (GlobalRole.VOLUNTEER, ProjectRole.VOLUNTEER),
    "demo-reviewer": (GlobalRole.VOLUNTEER, ProjectRole.REVIEWER),
    "demo-expert": (GlobalRole.VOLUNTEER, ProjectRole.EXPERT),
    "demo-coordinator": (GlobalRole.COORDINATOR, ProjectRole.COORDINATOR),
    "demo-admin": (GlobalRole.ADMIN, ProjectRole.COORDINATOR),
    "anna": (GlobalRole.VOLUNTEER, ProjectRole.VOLUNTEER),
    "bram": (GlobalRole.VOLUNTEER, ProjectRole.VOLUNTEER),
    "chris": (GlobalRole.VOLUNTEER, ProjectRole.VOLUNTEER),
    "daan": (GlobalRole.VOLUNTEER, ProjectRole.VOLUNTEER),
    "eva": (GlobalRole.VOLUNTEER, ProjectRole.VOLUNTEER),
}
OBSERVERS = ("demo-volunteer", "anna", "bram", "chris", "daan", "eva")

SITES = (
    ("Wageningen, Arboretum Belmonte", 51.9634, 5.6812),
    ("Utrecht, Amelisweerd", 52.0755, 5.1570),
    ("Groningen, Stadspark", 53.2000, 6.5460),
    ("Leiden, Hortus botanicus", 52.1575, 4.4860),
    ("Maastricht, Sint-Pietersberg", 50.8293, 5.6860),
    ("Zwolle, Park de Wezenlanden", 52.5060, 6.1040),
    ("Texel, De Slufter", 53.1180, 4.7600),
    ("Eindhoven, Genneper Parken", 51.4170, 5.4760),
)
NETHERLANDS_BBOX = (50.75, 3.35, 53.56, 7.23)


@dataclass
class DemoReport:
    users: int
    observations: int
    taxa: int
    phenophases: int


async def database_is_empty() -> bool:
    return not await User.exists() and not await Observation.exists()


async def load_demo(observations: int = 400, seed: int = 2026) -> DemoReport:
    rng = random.Random(seed)
    await load_vocabulary()
    taxa = {t.scientific_name: t for t in await Taxon.all()}
    phases = {p.code: p for p in await Phenophase.all()}
    password_hash = hash_password_sync(DEMO_PASSWORD)

    async with in_transaction() as conn:
        seq = await next_seq(conn)
        project = await Project.create(
            slug=DEMO_PROJECT,
            name="Natuurkalender demo",
            description="Demo project: spring and autumn phenology across the Netherlands.",
            min_latitude=NETHERLANDS_BBOX[0],
            min_longitude=NETHERLANDS_BBOX[1],
            max_latitude=NETHERLANDS_BBOX[2],
            max_longitude=NETHERLANDS_BBOX[3],
            created_seq=seq,
            updated_seq=seq,
            using_db=conn,
        )
        await ProjectTaxon.bulk_create(
            [ProjectTaxon(project=project, taxon=t) for t in taxa.values()], using_db=conn
        )
        users = {}
        for name, (global_role, project_role) in DEMO_USERS.items():
            user = await User.create(
                username=name,
                display_name=name.replace("demo-", "Demo ").title(),
                password_hash=password_hash,
                role=global_role,
                using_db=conn,
            )
            await Membership.create(user=user, project=project, role=project_role, using_db=conn)
            users[name] = user

        rows = _observations(rng, observations, project, users, taxa, phases)
        first = await next_seq(conn, len(rows)) - len(rows) + 1
        for seq, row in enumerate(rows, start=first):
            row.created_seq = row.updated_seq = row.client_changed_seq = seq
        await Observation.bulk_create(rows, batch_size=500, using_db=conn)
        decisions = [
            ReviewDecision(
                observation_id=row.id,
                reviewer=users["demo-expert"] if i % 3 == 0 else users["demo-reviewer"],
                decision=Decision.VERIFY if row.review_status == ReviewStatus.VERIFIED
                else Decision.REJECT,
                is_expert=i % 3 == 0,
                comment="" if row.review_status == ReviewStatus.VERIFIED
                else "Photo shows a different phenophase.",
            )
            for i, row in enumerate(rows)
            if row.review_status in (ReviewStatus.VERIFIED, ReviewStatus.REJECTED)
        ]
        await ReviewDecision.bulk_create(decisions, batch_size=500, using_db=conn)
        # This season's records get their quality flags and a place in the review queue.
        await run_checks([r.id for r in rows if r.review_status in (
            ReviewStatus.PENDING, ReviewStatus.NEEDS_REVIEW)], conn, edited=False)
    return DemoReport(
        users=len(users), observations=len(rows), taxa=len(taxa), phenophases=len(phases)
    )


def _observations(  # type: ignore[no-untyped-def]
    rng: random.Random, count: int, project, users, taxa, phases
) -> list[Observation]:
    terms = [t for t in vocabulary.taxa() if t.seasons]
    homes = {name: rng.sample(SITES, 2) for name in OBSERVERS}
    rows: list[Observation] = []
    while len(rows) < count:
        observer = rng.choice(OBSERVERS)
        site_name, lat, lon = rng.choice(homes[observer])
        term = rng.choice(terms)
        code = rng.choice(sorted(term.seasons))
        season = term.seasons[code]
        year = rng.choice(YEARS)
        onset = rng.gauss(season.mean_doy + YEAR_SHIFT[year], season.sd_days / 2)
        onset = min(max(onset, 1.0), 360.0)
        phase = phases[code]
        # The last "no" before the first "yes" is what makes an onset date
        # meaningful, so volunteers often record one.
        visits = []
        if rng.random() < 0.5:
            visits.append((Status.NO, onset - rng.uniform(3, 14)))
        visits.append((Status.YES, onset + rng.uniform(0, 6)))
        if rng.random() < 0.05:
            visits.append((Status.UNKNOWN, onset + rng.uniform(7, 12)))
        for status, doy in visits:
            if len(rows) >= count:
                break
            rows.append(
                _observation(rng, year, doy, status, observer, lat, lon, users, project,
                             taxa[term.scientific_name], phase)
            )
    return rows


def _observation(  # type: ignore[no-untyped-def]
    rng: random.Random, year: int, doy: float, status: Status, observer: str,
    lat: float, lon: float, users, project, taxon, phase,
) -> Observation:
    day = datetime(year, 1, 1, tzinfo=UTC) + timedelta(days=max(doy, 1.0) - 1)
    local_hour = rng.randint(8, 18)
    # Central European time: +1 in winter, +2 in summer (close enough for demo data).
    offset_min = 120 if 4 <= day.month <= 10 else 60
    observed = day.replace(hour=local_hour, minute=rng.randint(0, 59)) - timedelta(
        minutes=offset_min
    )
    classes = phase.intensity_codes()
    geoprivacy = rng.choices(
        [Geoprivacy.OPEN, Geoprivacy.OBSCURED, Geoprivacy.PRIVATE], weights=[80, 15, 5]
    )[0]
    if year < YEARS[-1]:
        review = rng.choices(
            [ReviewStatus.VERIFIED, ReviewStatus.AUTO_ACCEPTED, ReviewStatus.REJECTED],
            weights=[75, 20, 5],
        )[0]
    else:
        review = rng.choices(
            [ReviewStatus.NEEDS_REVIEW, ReviewStatus.PENDING, ReviewStatus.AUTO_ACCEPTED],
            weights=[50, 20, 30],
        )[0]
    return Observation(
        id=str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        user=users[observer],
        project=project,
        taxon=taxon,
        phenophase=phase,
        status=status,
        intensity=rng.choice(classes) if status == Status.YES and classes else None,
        observed_at=observed,
        observed_utc_offset_min=offset_min,
        latitude=round(lat + rng.uniform(-0.0005, 0.0005), 6),
        longitude=round(lon + rng.uniform(-0.0005, 0.0005), 6),
        coordinate_uncertainty_m=rng.choice([5.0, 10.0, 15.0, 30.0, 65.0]),
        geoprivacy=geoprivacy,
        notes=rng.choice(["", "", "", "Sunny, sheltered spot.", "After a cold night."]),
        review_status=review,
        verified_taxon=taxon if review == ReviewStatus.VERIFIED else None,
        verified_phenophase=phase if review == ReviewStatus.VERIFIED else None,
        client_revision=1,
        client_created_at=observed,
        client_updated_at=observed,
    )
