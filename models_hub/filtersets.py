from __future__ import annotations

import django_filters

from models_hub.models import (
    CompressionJob,
    CompressionJobStatus,
    Dataset,
    DatasetPurpose,
    Framework,
    ModelArtifact,
    Variant,
)


class ModelArtifactFilterSet(django_filters.FilterSet):
    name = django_filters.CharFilter(help_text="Exactly this name: all versions of one model.")
    search = django_filters.CharFilter(
        field_name="name", lookup_expr="icontains", help_text="Names containing this."
    )
    framework = django_filters.MultipleChoiceFilter(choices=Framework.choices)

    class Meta:
        model = ModelArtifact
        fields = ["name", "search", "version", "framework", "task"]


class DatasetFilterSet(django_filters.FilterSet):
    search = django_filters.CharFilter(
        field_name="name", lookup_expr="icontains", help_text="Names containing this."
    )
    purpose = django_filters.MultipleChoiceFilter(choices=DatasetPurpose.choices)

    class Meta:
        model = Dataset
        fields = ["search", "purpose", "labelled"]


class CompressionJobFilterSet(django_filters.FilterSet):
    status = django_filters.MultipleChoiceFilter(choices=CompressionJobStatus.choices)

    class Meta:
        model = CompressionJob
        fields = ["status", "model"]


class VariantFilterSet(django_filters.FilterSet):
    class Meta:
        model = Variant
        fields = ["job", "model", "parent"]
