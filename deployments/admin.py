from django.contrib import admin

from deployments.models import Deployment, DeploymentTarget, InstalledModel, SignedManifest


class ReadOnlyAdmin(admin.ModelAdmin):
    """Rollouts change through `deployments.actions` only (signatures, orders, events)."""

    def has_add_permission(self, request: object) -> bool:
        return False

    def has_change_permission(self, request: object, obj: object = None) -> bool:
        return False


@admin.register(Deployment)
class DeploymentAdmin(ReadOnlyAdmin):
    list_display = ["name", "status", "phase", "phase_count", "created_at"]
    list_filter = ["status"]


@admin.register(DeploymentTarget)
class DeploymentTargetAdmin(ReadOnlyAdmin):
    list_display = ["deployment", "device", "phase", "state", "reason"]
    list_filter = ["state"]


@admin.register(SignedManifest)
class SignedManifestAdmin(ReadOnlyAdmin):
    list_display = ["id", "kind", "sha256", "key_id", "expires_at"]


@admin.register(InstalledModel)
class InstalledModelAdmin(ReadOnlyAdmin):
    list_display = ["device", "sha256", "version", "since"]
