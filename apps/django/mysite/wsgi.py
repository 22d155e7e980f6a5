"""The WSGI callable, as `django-admin startproject` writes it, plus choosing the
database when the app starts serving.

The component is built (settings imported, the app set up) where no database file
exists, so the build prepares the in-memory database: its tables and a demo admin
account. At run time, if the server grants a database file with
`--env DJANGO_DB_PATH=/data/db.sqlite3` (in a directory granted `rw`), the first
request switches to it; that file is migrated with `manage.py migrate` beforehand
(see README.md).
"""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mysite.settings")

_django = get_wsgi_application()


def _create_in_memory_tables():
    from django.conf import settings
    from django.core.management import call_command

    if settings.DATABASES["default"]["NAME"] == ":memory:":
        call_command("migrate", verbosity=0, interactive=False)
        from django.contrib.auth import get_user_model

        # Demo credentials for the admin (this database lives and dies with the process).
        get_user_model().objects.create_superuser("admin", "admin@example.com", "sandbox-demo")


def _use_granted_database_file():
    """Points Django at DJANGO_DB_PATH if the server granted one; True if so."""
    path = os.environ.get("DJANGO_DB_PATH")
    if not path:
        return False
    from django.conf import settings
    from django.db import connections

    settings.DATABASES["default"]["NAME"] = path
    connection = connections["default"]
    connection.settings_dict["NAME"] = path
    # Now a file database, so close() really closes the in-memory one of the build.
    connection.close()
    return True


_create_in_memory_tables()
_database_chosen = False


def application(environ, start_response):
    global _database_chosen
    # Not latched until a file is chosen: `wsgi-wasm build --warm-up` calls this
    # at build time, with no file granted yet.
    if not _database_chosen:
        _database_chosen = _use_granted_database_file()
    return _django(environ, start_response)
