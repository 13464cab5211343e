import re

from django.conf import settings
from django.contrib.auth import views as auth_views
from django.urls import path, re_path

from frontend import views

urlpatterns = [
    path("login/", auth_views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("", views.fleet, name="fleet"),
    path("devices/<uuid:device_id>/", views.device_detail, name="device"),
    path("devices/<uuid:device_id>/retire/", views.device_retire, name="device-retire"),
    path("tokens/", views.tokens, name="tokens"),
    path("tokens/<int:token_id>/revoke/", views.token_revoke, name="token-revoke"),
    path("static-vendor/plotly.min.js", views.plotly_js, name="plotly-js"),
]

# Static files under the ASGI server (no web server in front in the embedded setup).
# A STATIC_URL on another host (a CDN inside the site's network) is served by that host.
if not re.match(r"^[a-z]+://", settings.STATIC_URL):
    prefix = re.escape(settings.STATIC_URL.lstrip("/"))
    urlpatterns.append(re_path(rf"^{prefix}(?P<path>.+)$", views.static_file, name="static-file"))
