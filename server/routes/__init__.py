"""HTTP routes, one module per resource; ``ENDPOINTS`` lists them all."""

from server.endpoint import Endpoint
from server.routes import accounts, datasets, projects, vocabulary

ENDPOINTS: list[Endpoint] = [
    *accounts.ENDPOINTS,
    *projects.ENDPOINTS,
    *vocabulary.ENDPOINTS,
    *datasets.ENDPOINTS,
]
