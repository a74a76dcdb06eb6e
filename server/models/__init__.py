"""Storage model (Tortoise ORM), one module per domain.

``MODEL_MODULES`` is what the Tortoise config loads; the migrations in
``server/migrations`` are generated from these modules with
``phenosync makemigrations``.

Tortoise 1.1 copies a model docstring's first line and ``#:`` field comments
into SQL comments, and its SQLite migrations split statements on ``;``: keep
``;`` out of first docstring lines and use plain ``#`` comments on fields.
(``tests/server/test_database.py`` applies every migration on both backends.)
"""

MODEL_MODULES = [
    "server.models.sequence",
    "server.models.accounts",
    "server.models.reference",
    "server.models.observations",
    "server.models.review",
    "server.models.audit",
    "server.models.throttle",
    "server.models.uploads",
    "server.models.jobs",
    "server.models.releases",
]
