"""Settings, read from the environment through typed helpers that fail fast.

Embedded defaults need no server at all: SQLite under `var/`, a SQLite-backed channel
layer (shared between the ASGI server and Celery workers, unlike Channels' in-memory
layer) and Celery's filesystem broker. Setting `DATABASE_URL`, `REDIS_URL` or
`CELERY_BROKER_URL` switches to the real services.
"""

from __future__ import annotations

from pathlib import Path

from controlplane.env import (
    env_bool,
    env_int,
    env_list,
    env_optional,
    env_str,
    parse_database_url,
    require_url,
)

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = (BASE_DIR / env_str("TRIAD_VAR_DIR", "var")).resolve()
VAR_DIR.mkdir(parents=True, exist_ok=True)

DEBUG = env_bool("DJANGO_DEBUG", False)
_DEV_SECRET = "triad-insecure-development-key-change-me-in-production-0123456789"
SECRET_KEY = env_str("DJANGO_SECRET_KEY", _DEV_SECRET)
ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "channels",
    "controlplane",
    "devices",
    "scheduling",
    "models_hub",
    "deployments",
    "frontend",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "controlplane.middleware.BodySizeLimitMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "controlplane.urls"
ASGI_APPLICATION = "controlplane.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "frontend.context_processors.roles",
            ],
        },
    },
]

DATABASE_URL = env_str("DATABASE_URL", f"sqlite:///{VAR_DIR / 'triad.sqlite3'}")
# PostgreSQL connections per process (0: connect per request). Mind max_connections:
# server processes x (TRIAD_DB_POOL_SIZE + 2 for the heartbeat fast path, see
# devices/ingest.py), plus Celery workers, must fit under it.
TRIAD_DB_POOL_SIZE = env_int("TRIAD_DB_POOL_SIZE", 8, minimum=0)
DATABASES = {
    "default": parse_database_url("DATABASE_URL", DATABASE_URL, BASE_DIR).as_django(
        pool_size=TRIAD_DB_POOL_SIZE
    )
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "fleet"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
MEDIA_ROOT = Path(env_str("TRIAD_MEDIA_ROOT", str(VAR_DIR / "media")))

# --- Redis, channel layer, Celery -------------------------------------------------------
REDIS_URL = require_url("REDIS_URL", env_optional("REDIS_URL"), {"redis", "rediss", "unix"})

if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {
                # redis-py 8 reads with a 5 s socket timeout by default, the same 5 s that
                # channels-redis blocks in BZPOPMIN while a consumer waits: the read then
                # races the empty reply, and idle WebSocket consumers crash every few
                # seconds. Wait longer than the BZPOPMIN, but not forever on a dead Redis.
                "hosts": [{"address": REDIS_URL, "socket_timeout": 15}],
                "prefix": env_str("TRIAD_CHANNEL_PREFIX", "triad"),
            },
        }
    }
else:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "controlplane.channel_layers.SQLiteChannelLayer",
            "CONFIG": {"path": str(VAR_DIR / "channels.sqlite3")},
        }
    }

CELERY_BROKER_URL = (
    require_url(
        "CELERY_BROKER_URL",
        env_optional("CELERY_BROKER_URL") or REDIS_URL,
        {"redis", "rediss", "amqp", "pyamqp", "filesystem", "memory"},
    )
    or "filesystem://"
)
if CELERY_BROKER_URL == "filesystem://":
    _broker_dir = VAR_DIR / "celery-broker"
    for _sub in ("queue", "processed", "control"):
        (_broker_dir / _sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir / "queue"),
        "data_folder_out": str(_broker_dir / "queue"),
        "processed_folder": str(_broker_dir / "processed"),
        "control_folder": str(_broker_dir / "control"),
        "store_processed": False,
    }
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_IGNORE_RESULT = True
# Compression jobs have a queue of their own, so that their workers scale apart from the
# rest; a worker serves both with `-Q celery,compression` (controlplane.demo does).
CELERY_TASK_ROUTES = {"models_hub.tasks.run_compression_job": {"queue": "compression"}}
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")
CELERY_BEAT_SCHEDULE = {
    "sweep-offline-devices": {
        "task": "devices.tasks.sweep_offline_devices",
        "schedule": float(env_int("TRIAD_SWEEP_INTERVAL_S", 5, minimum=1)),
        "options": {"expires": 30},
    },
    "advance-rollouts": {
        "task": "deployments.tasks.advance_rollouts",
        "schedule": float(env_int("TRIAD_ROLLOUT_SWEEP_INTERVAL_S", 5, minimum=1)),
        "options": {"expires": 30},
    },
}

# --- Fleet ------------------------------------------------------------------------------
TRIAD_HEARTBEAT_INTERVAL_S = env_int("TRIAD_HEARTBEAT_INTERVAL_S", 10, minimum=1)
# A device is offline after missing this many heartbeats in a row.
TRIAD_OFFLINE_AFTER_MISSED = env_int("TRIAD_OFFLINE_AFTER_MISSED", 3, minimum=1)
TRIAD_MAX_BODY_BYTES = env_int("TRIAD_MAX_BODY_BYTES", 1_048_576, minimum=1024)
TRIAD_MAX_TELEMETRY_BATCH = env_int("TRIAD_MAX_TELEMETRY_BATCH", 500, minimum=1)
TRIAD_MAX_CLOCK_SKEW_S = env_int("TRIAD_MAX_CLOCK_SKEW_S", 300, minimum=0)
DATA_UPLOAD_MAX_MEMORY_SIZE = TRIAD_MAX_BODY_BYTES
# Workload files on the upload routes (controlplane.middleware.UPLOAD_ROUTES).
TRIAD_MAX_UPLOAD_BYTES = env_int("TRIAD_MAX_UPLOAD_BYTES", 16 * 1_048_576, minimum=1024)
# Model files and data sets on the model upload routes (MODEL_UPLOAD_ROUTES there).
TRIAD_MAX_MODEL_BYTES = env_int("TRIAD_MAX_MODEL_BYTES", 256 * 1_048_576, minimum=65_536)

# --- Rollouts ---------------------------------------------------------------------------
# The Ed25519 key ring that signs artifact manifests (controlplane.signing).
TRIAD_SIGNING_KEY_DIR = Path(env_str("TRIAD_SIGNING_KEY_DIR", str(VAR_DIR / "signing")))
# How long a signed order stays valid; the rollout sweeper renews orders in their last half.
TRIAD_MANIFEST_TTL_S = env_int("TRIAD_MANIFEST_TTL_S", 7 * 24 * 3600, minimum=60)

# --- REST API ---------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.SessionAuthentication",
        "rest_framework.authentication.BasicAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["controlplane.permissions.IsOperator"],
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.LimitOffsetPagination",
    "PAGE_SIZE": 100,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "controlplane.api.exception_handler",
    "DEFAULT_THROTTLE_RATES": {},
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Triad control plane API",
    "DESCRIPTION": "Fleet, agents, scheduling and model rollout for cloud-edge-end systems.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["controlplane.permissions.IsOperator"],
    "COMPONENT_SPLIT_REQUEST": True,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "ENUM_NAME_OVERRIDES": {
        "TierEnum": "devices.models.Tier",
        "DeviceStatusEnum": "devices.models.DeviceStatus",
        "JobStatusEnum": "scheduling.models.JobStatus",
        "DecisionStatusEnum": "scheduling.models.DecisionStatus",
        "WorkloadSourceEnum": "scheduling.models.WorkloadSource",
        "AlgorithmEnum": "scheduling.models.Algorithm",
        "ObjectiveEnum": "scheduling.models.Objective",
        "SolutionKindEnum": "scheduling.models.SolutionKind",
        "FrameworkEnum": "models_hub.models.Framework",
        "DatasetPurposeEnum": "models_hub.models.DatasetPurpose",
    },
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("TRIAD_LOG_LEVEL", "INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}
