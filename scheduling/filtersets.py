from __future__ import annotations

import django_filters

from scheduling.models import (
    Algorithm,
    Decision,
    DecisionStatus,
    JobStatus,
    SchedulingJob,
    Solution,
    SolutionKind,
    Workload,
    WorkloadSource,
)


class WorkloadFilterSet(django_filters.FilterSet):
    source = django_filters.MultipleChoiceFilter(choices=WorkloadSource.choices)
    name = django_filters.CharFilter(lookup_expr="icontains")

    class Meta:
        model = Workload
        fields = ["source", "template", "name"]


class SchedulingJobFilterSet(django_filters.FilterSet):
    status = django_filters.MultipleChoiceFilter(choices=JobStatus.choices)
    algorithm = django_filters.ChoiceFilter(choices=Algorithm.choices)

    class Meta:
        model = SchedulingJob
        fields = ["status", "workload", "algorithm"]


class SolutionFilterSet(django_filters.FilterSet):
    kind = django_filters.ChoiceFilter(choices=SolutionKind.choices)

    class Meta:
        model = Solution
        fields = ["kind"]


class DecisionFilterSet(django_filters.FilterSet):
    status = django_filters.MultipleChoiceFilter(choices=DecisionStatus.choices)

    class Meta:
        model = Decision
        fields = ["status", "job"]
