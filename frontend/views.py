from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from frontend.decorators import operator_required


@operator_required
def fleet(request: HttpRequest) -> HttpResponse:
    return render(request, "frontend/fleet.html")
