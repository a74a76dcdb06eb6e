"""HTTP routes, one module per resource; ``ENDPOINTS`` lists them all."""

from server.endpoint import Endpoint
from server.routes import accounts, datasets, photos, projects, review, sync, vocabulary

ENDPOINTS: list[Endpoint] = [
    *accounts.ENDPOINTS,
    *projects.ENDPOINTS,
    *photos.ENDPOINTS,
    *vocabulary.ENDPOINTS,
    *sync.ENDPOINTS,
    *review.ENDPOINTS,
    *datasets.ENDPOINTS,
]
