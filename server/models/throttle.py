"""Failed logins, kept to throttle password guessing across processes."""

from __future__ import annotations

from tortoise import fields
from tortoise.models import Model


class LoginFailure(Model):
    id = fields.BigIntField(primary_key=True)
    # "user:<name>" or "addr:<ip>": both are throttled.
    key = fields.CharField(max_length=160)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "login_failures"
        indexes = (("key", "created_at"),)
