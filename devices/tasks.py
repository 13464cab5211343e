"""Celery tasks of the fleet. They call actions; they never write models themselves."""

from __future__ import annotations

from celery import shared_task

from devices.actions import mark_overdue_devices_offline


@shared_task(acks_late=True, ignore_result=True)
def sweep_offline_devices() -> int:
    """Run by beat every few seconds; safe to run on several workers at once."""
    return len(mark_overdue_devices_offline())
