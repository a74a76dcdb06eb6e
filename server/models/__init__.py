"""Storage model (Tortoise ORM), one module per domain.

``MODEL_MODULES`` is what the Tortoise config loads; the migrations in
``server/migrations`` are generated from these modules with
``phenosync makemigrations``.
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
