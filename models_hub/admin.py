"""Read-only admin pages: model hub changes go through actions (the API and the console),
which keep files and rows together and fence workers by attempt."""

from __future__ import annotations

from typing import Any

from django.contrib import admin

from models_hub.models import CompressionJob, Dataset, ModelArtifact, Variant


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request: Any, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: Any, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: Any, obj: Any = None) -> bool:
        return False


@admin.register(ModelArtifact)
class ModelArtifactAdmin(ReadOnlyAdmin):
    list_display = ["name", "version", "framework", "task", "size_bytes", "created_at"]
    list_filter = ["framework", "task"]
    search_fields = ["name", "description", "sha256"]


@admin.register(Dataset)
class DatasetAdmin(ReadOnlyAdmin):
    list_display = ["name", "purpose", "samples", "labelled", "num_classes", "created_at"]
    list_filter = ["purpose", "labelled"]
    search_fields = ["name", "description", "sha256"]


@admin.register(CompressionJob)
class CompressionJobAdmin(ReadOnlyAdmin):
    list_display = ["id", "model", "recipe", "status", "progress", "attempts", "created_at"]
    list_filter = ["status"]


@admin.register(Variant)
class VariantAdmin(ReadOnlyAdmin):
    list_display = ["name", "job", "model", "recipe", "size_bytes", "created_at"]
    search_fields = ["name", "recipe", "sha256"]
