from django.contrib import admin

from devices.models import Device, DeviceCredential, EnrollmentToken, NetworkLink, StatusChange


@admin.register(Device)
class DeviceAdmin(admin.ModelAdmin):
    list_display = ["name", "tier", "status", "cpu_cores", "gflops", "last_heartbeat_at"]
    list_filter = ["tier", "status"]
    search_fields = ["name", "location"]
    readonly_fields = ["id", "enrolled_at", "last_heartbeat_at", "offline_after"]


@admin.register(EnrollmentToken)
class EnrollmentTokenAdmin(admin.ModelAdmin):
    list_display = [
        "prefix",
        "name",
        "created_by",
        "expires_at",
        "use_count",
        "max_uses",
        "revoked_at",
    ]
    readonly_fields = ["prefix", "token_hash", "use_count"]


@admin.register(DeviceCredential)
class DeviceCredentialAdmin(admin.ModelAdmin):
    list_display = ["device", "created_at", "revoked_at"]
    readonly_fields = ["device", "key_hash", "created_at"]


admin.site.register(NetworkLink)
admin.site.register(StatusChange)
