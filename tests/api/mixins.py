"""API tests written once and declared per endpoint, in NetBox's style.

A test class sets `url` (a list endpoint) and, where it has one, `detail_url()` and
`valid_create`/`invalid_create`; the mixins then check roles, listing, creation and bad input.
"""

from __future__ import annotations

from typing import Any, ClassVar

import pytest
from rest_framework.test import APIClient


def client_for(user: Any | None) -> APIClient:
    client = APIClient()
    if user is not None:
        client.force_authenticate(user)
    return client


class RoleMixin:
    """Anonymous and role-less users are refused; operators and admins are let in."""

    url: ClassVar[str]

    def test_anonymous_is_refused(self, db: Any) -> None:
        response = client_for(None).get(self.url)
        assert response.status_code in (401, 403)
        assert "detail" in response.json()

    def test_user_without_role_is_refused(self, nobody: Any) -> None:
        response = client_for(nobody).get(self.url)
        assert response.status_code == 403
        assert response.json()["code"] == "permission_denied"

    @pytest.mark.parametrize("who", ["operator", "admin_user"])
    def test_roles_may_list(self, who: str, request: pytest.FixtureRequest) -> None:
        user = request.getfixturevalue(who)
        response = client_for(user).get(self.url)
        assert response.status_code == 200
        assert "results" in response.json()


class ListMixin:
    url: ClassVar[str]
    fixture_name: ClassVar[str]

    def test_list_shows_objects(self, operator: Any, request: pytest.FixtureRequest) -> None:
        request.getfixturevalue(self.fixture_name)
        body = client_for(operator).get(self.url).json()
        assert body["count"] >= 1


class CreateMixin:
    """A valid body creates one object; each invalid body names its field and creates none."""

    url: ClassVar[str]
    model: ClassVar[Any]
    valid_create: ClassVar[dict[str, Any]]
    invalid_create: ClassVar[list[tuple[dict[str, Any], str]]]

    def create_body(self, body: dict[str, Any], request: pytest.FixtureRequest) -> dict[str, Any]:
        """The body to post. Endpoints whose bodies refer to objects that fixtures make
        (a job's workload) override this to fill them in."""
        return body

    def test_create(self, operator: Any, request: pytest.FixtureRequest) -> None:
        body = self.create_body(self.valid_create, request)
        before = self.model.objects.count()
        response = client_for(operator).post(self.url, body, format="json")
        assert response.status_code == 201, response.json()
        assert self.model.objects.count() == before + 1

    def test_invalid_create_names_field_and_stores_nothing(
        self, operator: Any, request: pytest.FixtureRequest
    ) -> None:
        for invalid, field in self.invalid_create:
            body = self.create_body(invalid, request)
            before = self.model.objects.count()
            response = client_for(operator).post(self.url, body, format="json")
            assert response.status_code == 400, (body, response.json())
            assert field in response.json(), (body, response.json())
            assert self.model.objects.count() == before
