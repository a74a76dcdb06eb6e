"""Users, their project roles, and API tokens (stored as hashes only)."""

from __future__ import annotations

from tortoise import fields
from tortoise.models import Model

from schemas.roles import GlobalRole, ProjectRole


class User(Model):
    id = fields.IntField(primary_key=True)
    username = fields.CharField(max_length=64, unique=True)
    display_name = fields.CharField(max_length=128, default="")
    email = fields.CharField(max_length=254, null=True)
    password_hash = fields.CharField(max_length=255)
    role = fields.CharEnumField(GlobalRole, max_length=16, default=GlobalRole.VOLUNTEER)
    is_active = fields.BooleanField(default=True)
    created_at = fields.DatetimeField(auto_now_add=True)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "users"

    def __str__(self) -> str:
        return self.username


class Membership(Model):
    """A user's role in one project (reviewer and expert exist only here)."""

    id = fields.IntField(primary_key=True)
    user: fields.ForeignKeyRelation[User] = fields.ForeignKeyField(
        "models.User", related_name="memberships", on_delete=fields.CASCADE
    )
    project: fields.ForeignKeyRelation = fields.ForeignKeyField(
        "models.Project", related_name="memberships", on_delete=fields.CASCADE
    )
    role = fields.CharEnumField(ProjectRole, max_length=16, default=ProjectRole.VOLUNTEER)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "memberships"
        unique_together = (("user", "project"),)


class ApiToken(Model):
    """A bearer token, stored only as its SHA-256 (the token is shown once).

    Tokens are 256 random bits, so a fast hash is enough (as GitHub does);
    passwords, which people choose, get argon2id instead.
    """

    id = fields.IntField(primary_key=True)
    user: fields.ForeignKeyRelation[User] = fields.ForeignKeyField(
        "models.User", related_name="tokens", on_delete=fields.CASCADE
    )
    token_hash = fields.CharField(max_length=64, unique=True)
    prefix = fields.CharField(max_length=16)
    name = fields.CharField(max_length=64, default="")
    created_at = fields.DatetimeField(auto_now_add=True)
    last_used_at = fields.DatetimeField(null=True)
    expires_at = fields.DatetimeField(null=True)
    revoked_at = fields.DatetimeField(null=True)

    class Meta:
        table = "api_tokens"
