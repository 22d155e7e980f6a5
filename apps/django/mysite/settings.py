"""Settings for a small Django project served from a WebAssembly sandbox.

The database is the SQLite file named by DJANGO_DB_PATH, in a directory the server
grants read-write (`--dir data:/data:rw --env DJANGO_DB_PATH=/data/db.sqlite3`):
every instance and every restart sees the same data. Without it, the database is
SQLite in memory, separately in each instance (wsgi.py creates its tables), for
trying the example with no setup.
"""

import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent

# A fixed example key: a real deployment reads it from its configuration.
SECRET_KEY = "wsgi-wasm-example-not-secret-0123456789abcdefghijklmnopqrstuvwxyz"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "notes",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "mysite.urls"

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
            ],
        },
    },
]

WSGI_APPLICATION = "mysite.wsgi.application"

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        # Read again by wsgi.py at run time: settings are imported when the
        # component is built, where the granted directory does not exist.
        "NAME": os.environ.get("DJANGO_DB_PATH", ":memory:"),
        # Other instances write to the same file: wait for their transactions
        # instead of failing at once with "database is locked".
        "OPTIONS": {"timeout": 30},
    }
}

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
# Where `manage.py collectstatic` gathers the admin's and the apps' static files,
# for the host to serve with `wsgi-wasm serve --static /static=DIR` (run natively,
# like migrate; the sandbox never serves these itself).
STATIC_ROOT = os.environ.get("DJANGO_STATIC_ROOT", str(BASE_DIR / "staticfiles"))
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
