"""Django side of the fleet benchmark: migrate a fresh database and enroll a fleet in bulk.

Run as a subprocess by `benchmarks.fleet` (so the load generator never loads Django):

    DATABASE_URL=postgres://…/triad_bench python -m benchmarks.fleet_setup --agents 10000 \
        --out var/bench/credentials.txt

Enrolling ten thousand agents one HTTP request at a time would measure enrollment, not
heartbeats, so the devices and their credentials are written in bulk here with the same
fields `devices.actions.enroll_device` sets; every heartbeat still goes over HTTP.
"""

from __future__ import annotations

import argparse
import os
import random
from datetime import timedelta
from pathlib import Path

TIERS = (("end", 0.80), ("edge", 0.15), ("cloud", 0.05))


def enroll_fleet(count: int, seed: int) -> list[str]:
    from django.conf import settings
    from django.db import transaction

    from devices.actions import create_enrollment_token
    from devices.credentials import hash_secret, new_device_credential
    from devices.models import Device, DeviceCredential, Tier

    rng = random.Random(seed)
    token, _ = create_enrollment_token(
        created_by=None, name="fleet benchmark", max_uses=count, ttl=timedelta(hours=1)
    )
    devices = []
    for index in range(count):
        tier = rng.choices([t for t, _ in TIERS], weights=[w for _, w in TIERS])[0]
        idle = round(rng.uniform(2, 40), 1)
        devices.append(
            Device(
                name=f"bench-{tier}-{index:05d}",
                tier=Tier(tier),
                cpu_cores=rng.choice([2, 4, 8, 16, 64]),
                memory_mb=rng.choice([2048, 4096, 16384, 131072]),
                gflops=round(rng.uniform(5, 5000), 1),
                power_idle_w=idle,
                power_busy_w=round(idle * rng.uniform(1.5, 4), 1),
                labels={"site": f"site-{index % 97}"},
                enrolled_with=token,
                heartbeat_interval_s=settings.TRIAD_HEARTBEAT_INTERVAL_S,
            )
        )
    credentials = [new_device_credential(device.id) for device in devices]
    with transaction.atomic():
        Device.objects.bulk_create(devices, batch_size=2000)
        DeviceCredential.objects.bulk_create(
            [
                DeviceCredential(device=device, key_hash=hash_secret(credential))
                for device, credential in zip(devices, credentials, strict=True)
            ],
            batch_size=2000,
        )
        token.use_count = count
        token.save(update_fields=["use_count"])
    return credentials


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.fleet_setup")
    parser.add_argument("--agents", type=int, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=1)
    options = parser.parse_args()

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "controlplane.settings")
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", "--noinput", verbosity=0)
    credentials = enroll_fleet(options.agents, options.seed)
    options.out.parent.mkdir(parents=True, exist_ok=True)
    # Throwaway secrets of a throwaway database, readable by this user only.
    options.out.touch(mode=0o600)
    options.out.write_text("\n".join(credentials) + "\n")


if __name__ == "__main__":
    main()
