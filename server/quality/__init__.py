"""Automatic quality checks: one module per check, a registry that runs them.

``run_checks(observation_ids, conn)`` runs every check on the observations,
writes their ``QualityFlag`` rows (stable code, human message, details),
keeps ``Observation.flag_count`` in step and moves the review status
(``server.review.states``).  The sync push calls it for every observation it
writes, in the push transaction; ``phenosync recheck`` re-runs it when data
the checks learn from (verified observations, project areas) has changed.
"""

from server.quality.registry import CHECKS, PHOTO_CHECKS, describe, explanations
from server.quality.runner import run_checks

__all__ = ["CHECKS", "PHOTO_CHECKS", "describe", "explanations", "run_checks"]
