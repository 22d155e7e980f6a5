"""The WSGI callable, as `django-admin startproject` writes it, plus setting up the
in-memory database: its tables and a demo admin account (there is no database file
to migrate or to keep users in beforehand)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mysite.settings")

application = get_wsgi_application()


def _create_in_memory_tables():
    from django.conf import settings
    from django.core.management import call_command

    if settings.DATABASES["default"]["NAME"] == ":memory:":
        call_command("migrate", verbosity=0, interactive=False)
        from django.contrib.auth import get_user_model

        # Demo credentials for the admin (this database lives and dies with the process).
        get_user_model().objects.create_superuser("admin", "admin@example.com", "sandbox-demo")


_create_in_memory_tables()
