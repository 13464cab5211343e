from __future__ import annotations

import django_filters
from django.db.models import QuerySet

from devices.models import Device, DeviceStatus, Tier


class DeviceFilterSet(django_filters.FilterSet):
    tier = django_filters.MultipleChoiceFilter(choices=Tier.choices)
    status = django_filters.MultipleChoiceFilter(choices=DeviceStatus.choices)
    name = django_filters.CharFilter(lookup_expr="icontains")
    label = django_filters.CharFilter(
        method="filter_label", label="Label selector key=value (repeat with commas)"
    )

    class Meta:
        model = Device
        fields = ["tier", "status", "name", "label"]

    def filter_label(self, queryset: QuerySet[Device], name: str, value: str) -> QuerySet[Device]:
        for pair in value.split(","):
            key, sep, wanted = pair.partition("=")
            if not sep or not key.strip():
                raise django_filters.exceptions.FieldError(  # type: ignore[attr-defined]
                    "label must be key=value"
                )
            queryset = queryset.filter(**{f"labels__{key.strip()}": wanted.strip()})
        return queryset
