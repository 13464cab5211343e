from typing import Any

from django.http import HttpRequest

from controlplane.roles import is_admin, is_operator


def roles(request: HttpRequest) -> dict[str, Any]:
    user = getattr(request, "user", None)
    return {"is_operator": is_operator(user), "is_admin": is_admin(user)}
