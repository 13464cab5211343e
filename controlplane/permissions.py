"""DRF permission classes for the human roles."""

from __future__ import annotations

from typing import Any

from rest_framework.permissions import BasePermission

from controlplane.roles import is_admin, is_operator


class IsOperator(BasePermission):
    message = "You must be in the operator or admin group."

    def has_permission(self, request: Any, view: Any) -> bool:
        return is_operator(request.user)


class IsAdmin(BasePermission):
    message = "You must be in the admin group."

    def has_permission(self, request: Any, view: Any) -> bool:
        return is_admin(request.user)
