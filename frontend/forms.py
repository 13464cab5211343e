from __future__ import annotations

from datetime import timedelta

from django import forms

# Choice key -> (label, lifetime). Short lifetimes by default: a token is a secret.
EXPIRY_CHOICES = {
    "15m": ("15 minutes", timedelta(minutes=15)),
    "1h": ("1 hour", timedelta(hours=1)),
    "1d": ("1 day", timedelta(days=1)),
    "7d": ("7 days", timedelta(days=7)),
    "30d": ("30 days", timedelta(days=30)),
}


class EnrollmentTokenForm(forms.Form):
    name = forms.CharField(
        max_length=100,
        required=False,
        help_text="What the token is for, e.g. “junction 4 cameras”.",
    )
    uses = forms.IntegerField(
        min_value=1, max_value=100_000, initial=1, help_text="How many devices may enroll with it."
    )
    expires = forms.ChoiceField(
        label="Expires in",
        choices=[(key, label) for key, (label, _) in EXPIRY_CHOICES.items()],
        initial="1h",
    )

    def ttl(self) -> timedelta:
        return EXPIRY_CHOICES[self.cleaned_data["expires"]][1]
