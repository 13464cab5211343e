"""Role checks written once for console pages; a test module declares its pages.

A subclass of `PageRoleTests` sets `pages`; its module provides a `urls` fixture mapping
each page to its URL. tests/frontend/conftest.py parametrizes `page` over `pages`.
"""

from __future__ import annotations

from typing import Any, ClassVar

from django.test import Client


def logged_in(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


class PageRoleTests:
    pages: ClassVar[list[str]]

    def test_anonymous_users_are_sent_to_login(
        self, client: Client, urls: dict[str, str], page: str
    ) -> None:
        response = client.get(urls[page])
        assert response.status_code == 302
        assert response["Location"].startswith("/login/?next=")

    def test_users_without_a_role_are_refused(
        self, nobody: Any, urls: dict[str, str], page: str
    ) -> None:
        response = logged_in(nobody).get(urls[page])
        assert response.status_code == 403
        assert b"has no role" in response.content
