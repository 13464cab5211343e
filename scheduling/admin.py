"""Read-only admin pages: scheduling changes go through actions (the API and the console),
and a reviewed decision is an audit record nobody may edit."""

from __future__ import annotations

from typing import Any

from django.contrib import admin

from scheduling.models import Decision, SchedulingJob, Solution, Workload


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request: Any, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: Any, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: Any, obj: Any = None) -> bool:
        return False


@admin.register(Workload)
class WorkloadAdmin(ReadOnlyAdmin):
    list_display = ["name", "source", "template", "task_count", "edge_count", "created_at"]
    list_filter = ["source", "template"]
    search_fields = ["name", "description"]


@admin.register(SchedulingJob)
class SchedulingJobAdmin(ReadOnlyAdmin):
    list_display = ["id", "workload", "status", "algorithm", "attempts", "created_at"]
    list_filter = ["status", "algorithm"]


@admin.register(Solution)
class SolutionAdmin(ReadOnlyAdmin):
    list_display = ["job", "kind", "name", "index", "feasible", "is_knee"]
    list_filter = ["kind"]


@admin.register(Decision)
class DecisionAdmin(ReadOnlyAdmin):
    list_display = ["job", "status", "proposed_by", "proposed_at", "reviewed_by", "reviewed_at"]
    list_filter = ["status"]
