"""Reviewers' decisions on observations: every one is kept, never overwritten."""

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
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "review_decisions"
        indexes = (("reviewer_id", "created_at"),)
