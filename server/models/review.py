"""Review: reviewers' decisions (every one kept, never overwritten) and the queue.

The queue is its own small table rather than a filter over observations: it
holds only the records waiting for a reviewer (100k, not the 1M stored), with
the columns the queue sorts and filters on, and the lease of the reviewer who
has claimed the item.  A row is added when an observation enters
``needs_review`` and removed when it leaves (``server.review.queue``).
"""

from __future__ import annotations

from tortoise import fields
from tortoise.models import Model

from schemas.observation import Decision


class ReviewDecision(Model):
    id = fields.IntField(primary_key=True)
    observation: fields.ForeignKeyRelation = fields.ForeignKeyField(
        "models.Observation", related_name="decisions", on_delete=fields.CASCADE
    )
    reviewer: fields.ForeignKeyRelation = fields.ForeignKeyField(
        "models.User", related_name="decisions", on_delete=fields.RESTRICT
    )
    decision = fields.CharEnumField(Decision, max_length=16)
    # An expert's decision settles a record alone (DESIGN.md, "Consensus").
    is_expert = fields.BooleanField(default=False)
    corrected_taxon: fields.ForeignKeyNullableRelation = fields.ForeignKeyField(
        "models.Taxon", related_name=False, null=True, on_delete=fields.SET_NULL
    )
    corrected_phenophase: fields.ForeignKeyNullableRelation = fields.ForeignKeyField(
        "models.Phenophase", related_name=False, null=True, on_delete=fields.SET_NULL
    )
    comment = fields.TextField(default="")
    # Which time the record was in the queue: only decisions of the current
    # round count towards consensus (a volunteer's edit starts a new one).
    round = fields.SmallIntField(default=1)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "review_decisions"
        indexes = (("reviewer_id", "created_at"), ("observation_id", "reviewer_id"))


class ReviewQueueItem(Model):
    """An observation waiting for review, with the lease of whoever claimed it."""

    id = fields.IntField(primary_key=True)
    observation: fields.OneToOneRelation = fields.OneToOneField(
        "models.Observation", related_name="queue_item", on_delete=fields.CASCADE
    )
    # Copies of the observation's columns the queue filters and sorts on.
    project_id = fields.IntField()
    taxon_id = fields.IntField()
    phenophase_id = fields.IntField()
    observer_id = fields.IntField()
    # Minus the flag count: the queue index is ascending on every column, so
    # "most flags first, then oldest" is one index range scan.
    flag_order = fields.SmallIntField(default=0)
    # The observation's created_seq: "oldest first" in commit order.
    created_seq = fields.BigIntField(default=0)
    # Reviewers disagreed: only experts see it now.
    expert_only = fields.BooleanField(default=False)
    round = fields.SmallIntField(default=1)
    # The lease: who claimed the item and until when (epoch milliseconds, an
    # integer so that SQLite and PostgreSQL compare it the same way in SQL).
    claimed_by_id = fields.IntField(null=True)
    lease_expires_ms = fields.BigIntField(default=0)
    entered_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "review_queue"
        indexes = (
            ("project_id", "expert_only", "flag_order", "created_seq"),
            ("claimed_by_id",),
        )
