"""Celery tasks of rollouts: the periodic sweep (timeouts, order renewal)."""

from __future__ import annotations

from celery import shared_task

from deployments import actions


@shared_task(acks_late=True, ignore_result=True)
def advance_rollouts() -> int:
    """Fail devices past their deadline and move their rollouts on; idempotent."""
    return actions.sweep_rollouts()
