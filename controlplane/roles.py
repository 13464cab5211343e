"""The two human roles. Admins can do everything operators can, and also approve."""

from __future__ import annotations

from typing import Any

OPERATOR_GROUP = "operator"
ADMIN_GROUP = "admin"


def _group_names(user: Any) -> set[str]:
    cached = getattr(user, "_triad_groups", None)
    if cached is None:
        cached = set(user.groups.values_list("name", flat=True))
        user._triad_groups = cached
    return cached


def is_admin(user: Any) -> bool:
    if not (user and user.is_authenticated and user.is_active):
        return False
    return bool(user.is_superuser or ADMIN_GROUP in _group_names(user))


def is_operator(user: Any) -> bool:
    """Operators and admins may use the console and the operator API."""
    if not (user and user.is_authenticated and user.is_active):
        return False
    return is_admin(user) or OPERATOR_GROUP in _group_names(user)
