from __future__ import annotations

import django_filters

from deployments.models import Deployment, DeploymentStatus


class DeploymentFilterSet(django_filters.FilterSet):
    status = django_filters.MultipleChoiceFilter(choices=DeploymentStatus.choices)
    device = django_filters.UUIDFilter(
        field_name="targets__device", help_text="Deployments that address this device."
    )

    class Meta:
        model = Deployment
        fields = ["status", "model", "variant", "device"]
