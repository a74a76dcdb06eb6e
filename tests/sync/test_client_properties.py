"""Property-based: devices of two users record, edit and delete offline and sync
over a faulty wire; after all devices sync to quiescence the server holds
exactly what a model of the rules predicts, with zero duplicates and zero
lost records, and every device sees the server's data.

How hypothesis meets asyncio here: the state machine is synchronous and runs
in a worker thread (``asyncio.to_thread``); each step hands its coroutine to
the session's event loop with ``asyncio.run_coroutine_threadsafe`` and waits
for it.  The app, its Tortoise connection pool and every client's httpx
transport stay on the one session loop they belong to, while the test itself
awaits the worker thread, leaving the loop free to run the steps.

The model, per record: a device's pending changes (the columns it changed,
or a delete) reach the server when that device syncs.  Sync is pull-then-push
and the steps run one after another, so no push meets a newer change by
another device (conflicts are covered in test_faults.py).  Deterministic
resolution: a delete wins over any edit; for an edit, the columns the syncing
device changed overwrite the server's, the others are kept.  Faults (lost
request, lost response, duplicated delivery) must change nothing of this.
Neither must held deliveries: a held push (whose retry got through) arrives
later, in any order among the other held pushes of every device, after
other syncs and edits, and none of them applies anything.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import uuid
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test
from starlette.applications import Starlette

from server.models.observations import Observation
from sync.client import SyncClient
from tests.factories import make_user
from tests.factories_sync import World, make_world
from tests.factories_syncclient import (
    FAST_RETRY,
    Phone,
    assert_converged,
    new_observation,
    no_sleep,
    sync_to_quiescence,
)
from tests.faults import Fault, FaultyTransport

OBS = "observations"
T = TypeVar("T")

EDITS = st.sampled_from([
    ("notes", "buds"), ("notes", "in flower"), ("notes", ""),
    ("latitude", 51.5), ("latitude", 52.25),
    ("geoprivacy", "obscured"), ("geoprivacy", "private"), ("geoprivacy", "open"),
    ("coordinate_uncertainty_m", 5.0), ("coordinate_uncertainty_m", 250.0),
])
COMPARED = ("notes", "latitude", "geoprivacy", "coordinate_uncertainty_m")
FAULTS = st.sampled_from([
    None, (Fault.LOSE_REQUEST, "push"), (Fault.LOSE_RESPONSE, "push"),
    (Fault.DUPLICATE, "push"), (Fault.LOSE_RESPONSE, "pull"), (Fault.DUPLICATE, "pull"),
])
DEVICES = 3  # two devices of user 0, one of user 1
_ids = itertools.count(1)


@dataclass
class Pending:
    deleted: bool = False
    created: bool = False
    columns: dict[str, Any] = field(default_factory=dict)


def make_machine(app: Starlette, world: World,
                 loop: asyncio.AbstractEventLoop) -> type[RuleBasedStateMachine]:
    def run(awaitable: Awaitable[T]) -> T:
        async def wrapped() -> T:
            return await awaitable

        return asyncio.run_coroutine_threadsafe(wrapped(), loop).result(timeout=120)

    class Devices(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.users = [run(make_user(project=world.project)) for _ in range(2)]
            self.phones: list[Phone] = []
            for n in range(DEVICES):
                user, token = self.users[0 if n < 2 else 1]
                wire = FaultyTransport(httpx.ASGITransport(app=app))
                client = SyncClient("http://testserver", token, transport=wire,
                                    retry=FAST_RETRY, sleep=no_sleep, rng=random.Random(n),
                                    batch_size=4, page_size=7)
                run(client.open())
                self.phones.append(Phone(client, wire, token, user.id))
            run(self.phones[0].client.sync())
            # The model: the server's records (None once deleted) and each device's outbox.
            self.server: dict[str, dict[str, Any] | None] = {}
            self.owner: dict[str, int] = {}
            self.pending: list[dict[str, Pending]] = [{} for _ in range(DEVICES)]

        def _local_ids(self, device: int) -> list[str]:
            return [r["id"] for r in run(self.phones[device].client.records(OBS))]

        @rule(device=st.integers(0, DEVICES - 1), edit=EDITS)
        def record(self, device: int, edit: tuple[str, Any]) -> None:
            rid = str(uuid.UUID(int=next(_ids)))
            values = {**new_observation(world, **dict([edit])), "id": rid}
            run(self.phones[device].client.record(OBS, values))
            self.owner[rid] = self.phones[device].user_id
            self.pending[device][rid] = Pending(
                created=True, columns={c: values[c] for c in COMPARED})

        @rule(device=st.integers(0, DEVICES - 1), pick=st.integers(0, 50), edit=EDITS)
        def edit(self, device: int, pick: int, edit: tuple[str, Any]) -> None:
            ids = self._local_ids(device)
            if not ids:
                return
            rid = ids[pick % len(ids)]
            column, value = edit
            local = run(self.phones[device].client.get(OBS, rid))
            if local is not None and local.get(column) == value:
                return  # the client records no change, so there is nothing to push
            run(self.phones[device].client.update(OBS, rid, {column: value}))
            self.pending[device].setdefault(rid, Pending()).columns[column] = value

        @rule(device=st.integers(0, DEVICES - 1), pick=st.integers(0, 50))
        def delete(self, device: int, pick: int) -> None:
            ids = self._local_ids(device)
            if not ids:
                return
            rid = ids[pick % len(ids)]
            run(self.phones[device].client.delete(OBS, rid))
            self.pending[device][rid] = Pending(deleted=True)

        @rule(device=st.integers(0, DEVICES - 1), fault=FAULTS, hold=st.booleans())
        def sync(self, device: int, fault: tuple[Fault, str] | None, hold: bool = False) -> None:
            phone = self.phones[device]
            if fault is not None:
                phone.wire.inject(fault[0], on=fault[1])
            if hold:
                # A slow network: one delivery of every push batch is held back
                # (released later, see ``release``), a retry gets through.
                for _ in range(50):
                    phone.wire.inject(Fault.HOLD, on="push")
                    phone.wire.inject(None, on="push")
            report = run(phone.client.sync())
            assert report.push.rejected == [] and report.push.conflicts == 0
            self._apply(device)
            phone.wire.plans.clear()  # a fault on a request that never came

        @rule(device=st.integers(0, DEVICES - 1), rng=st.randoms(use_true_random=False))
        def release(self, device: int, rng: random.Random) -> None:
            """The held pushes of a device arrive now, in any order: all late copies
            of pushes whose retry got through, so they change nothing."""
            wire = self.phones[device].wire
            order = list(range(len(wire.held)))
            rng.shuffle(order)
            for response in run(wire.release(order)):
                assert response.status_code == 200, response.text
                assert response.json()["counts"]["applied"] == 0, response.text

        @rule(device=st.integers(0, DEVICES - 1), pick=st.integers(0, 50), edit=EDITS)
        def edit_and_sync(self, device: int, pick: int, edit: tuple[str, Any]) -> None:
            """An edit pushed at once over a slow network: one after the other,
            pushes of the same record whose older copies are still held."""
            self.edit(device, pick, edit)
            self.sync(device, None, hold=True)

        @rule(hold=st.booleans())
        def sync_all(self, hold: bool = False) -> None:
            for device in range(DEVICES):
                self.sync(device, None, hold)

        def _apply(self, device: int) -> None:
            for rid, change in self.pending[device].items():
                if change.deleted:
                    if rid in self.server:
                        self.server[rid] = None
                elif rid not in self.server:
                    assert change.created
                    self.server[rid] = dict(change.columns)
                else:
                    current = self.server[rid]
                    if current is not None:  # a delete wins over any edit
                        current.update(change.columns)
            self.pending[device] = {}

        @invariant()
        def no_duplicates_on_any_device(self) -> None:
            for phone in self.phones:
                ids = self._local_ids(self.phones.index(phone))
                assert len(ids) == len(set(ids))

        def teardown(self) -> None:
            try:
                for device in range(DEVICES):
                    self.release(device, random.Random(device))
                run(sync_to_quiescence(self.phones))
                for device in range(DEVICES):
                    self._apply(device)  # nothing left: every outbox was empty or applied
                live = {rid: v for rid, v in self.server.items() if v is not None}
                expected = {u.id: {r for r in live if self.owner[r] == u.id}
                            for u, _ in self.users}
                run(assert_converged(app, self.phones, expected))
                for rid, values in live.items():
                    stored = run(Observation.get(id=rid))
                    assert {c: _plain(getattr(stored, c)) for c in COMPARED} == values, rid
                for rid, values in self.server.items():
                    if values is None:
                        assert not run(Observation.filter(id=rid, is_deleted=False).exists())
            finally:
                for phone in self.phones:
                    run(phone.client.close())

    return Devices


def _plain(value: Any) -> Any:
    return str(value) if hasattr(value, "value") else value


async def test_devices_converge_on_the_model(db: Starlette) -> None:
    world = await make_world()
    machine = make_machine(db, world, asyncio.get_running_loop())
    config = settings(
        max_examples=40, stateful_step_count=25, derandomize=True, deadline=None,
        database=None, suppress_health_check=[HealthCheck.too_slow],
    )
    await asyncio.to_thread(run_state_machine_as_test, machine, settings=config)
