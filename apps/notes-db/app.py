"""Notes kept in real data stores, from inside the sandbox.

A plain WSGI app with the same small API over three stores, each one reached only
because the operator granted it:

    GET  /<store>/notes          the notes, oldest first, as JSON
    POST /<store>/notes          adds the request body (UTF-8 text) as a note
    GET  /<store>/ping?n=N       N round trips to the store (SELECT 1, PING) and
                                 their mean time in microseconds, as the app saw it

<store> is `pg` (PostgreSQL through pg8000; PGHOST, PGPORT, PGUSER, PGPASSWORD,
PGDATABASE), `redis` (redis-py; REDIS_URL) or `sqlite` (SQLITE_PATH, a file in a
directory granted read-write). Configuration comes from the environment the
operator grants with --env. Each instance keeps one connection per store and
reopens it after a failure, as a worker process would.
"""

import json
import os
import sqlite3
import time
from urllib.parse import parse_qs

import pg8000.native
import redis


class Postgres:
    def connect(self):
        conn = pg8000.native.Connection(
            user=os.environ.get("PGUSER", "postgres"),
            password=os.environ.get("PGPASSWORD"),
            host=os.environ.get("PGHOST", "127.0.0.1"),
            port=int(os.environ.get("PGPORT", "5432")),
            database=os.environ.get("PGDATABASE", "postgres"),
            timeout=10,
            # The sandbox has no TLS (its CPython has no OpenSSL): plain TCP to a
            # granted destination, as to a database on a private network.
            ssl_context=False,
        )
        conn.run("CREATE TABLE IF NOT EXISTS notes (id SERIAL PRIMARY KEY, text TEXT NOT NULL)")
        return conn

    def add(self, conn, text):
        conn.run("INSERT INTO notes (text) VALUES (:text)", text=text)

    def notes(self, conn):
        return [row[0] for row in conn.run("SELECT text FROM notes ORDER BY id")]

    def ping(self, conn):
        return conn.run("SELECT 1")[0][0] == 1


class Redis:
    KEY = "notes"

    def connect(self):
        conn = redis.Redis.from_url(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"), socket_timeout=10)
        conn.ping()
        return conn

    def add(self, conn, text):
        conn.rpush(self.KEY, text.encode())

    def notes(self, conn):
        return [item.decode() for item in conn.lrange(self.KEY, 0, -1)]

    def ping(self, conn):
        return conn.ping()


class SQLite:
    def connect(self):
        # Another instance may be writing: wait for it rather than fail at once.
        conn = sqlite3.connect(os.environ["SQLITE_PATH"], timeout=30, isolation_level=None)
        conn.execute("CREATE TABLE IF NOT EXISTS notes (id INTEGER PRIMARY KEY, text TEXT NOT NULL)")
        return conn

    def add(self, conn, text):
        conn.execute("INSERT INTO notes (text) VALUES (?)", (text,))

    def notes(self, conn):
        return [row[0] for row in conn.execute("SELECT text FROM notes ORDER BY id")]

    def ping(self, conn):
        return conn.execute("SELECT 1").fetchone()[0] == 1


STORES = {"pg": Postgres(), "redis": Redis(), "sqlite": SQLite()}
_connections = {}


def _with_connection(name, action):
    store = STORES[name]
    conn = _connections.get(name)
    if conn is None:
        conn = _connections[name] = store.connect()
    try:
        return action(store, conn)
    except Exception:
        # A broken connection is not reused; the next request opens a new one.
        _connections.pop(name, None)
        raise


def ping(store, conn, rounds):
    started = time.perf_counter()
    ok = all(store.ping(conn) for _ in range(rounds))
    elapsed = time.perf_counter() - started
    return {"ok": ok, "round_trips": rounds, "mean_us": round(elapsed / rounds * 1e6, 1)}


def _reply(start_response, status, payload):
    body = json.dumps(payload).encode()
    start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]


def app(environ, start_response):
    parts = environ.get("PATH_INFO", "").strip("/").split("/")
    if len(parts) != 2 or parts[0] not in STORES or parts[1] not in ("notes", "ping"):
        return _reply(start_response, "404 Not Found", {"error": "try /pg/notes, /redis/notes or /sqlite/notes"})
    name, what = parts
    method = environ["REQUEST_METHOD"]
    try:
        if what == "ping":
            rounds = int(parse_qs(environ.get("QUERY_STRING", "")).get("n", ["1"])[0])
            return _reply(start_response, "200 OK", _with_connection(name, lambda s, c: ping(s, c, rounds)))
        if method == "POST":
            length = int(environ.get("CONTENT_LENGTH") or 0)
            text = environ["wsgi.input"].read(length).decode("utf-8")
            _with_connection(name, lambda s, c: s.add(c, text))
            return _reply(start_response, "201 Created", {"added": text})
        return _reply(start_response, "200 OK", {"notes": _with_connection(name, lambda s, c: s.notes(c))})
    except (OSError, pg8000.native.InterfaceError, redis.RedisError, sqlite3.Error) as e:
        # The store is unreachable or refused: say which and why, as a 503.
        cause = f" ({type(e.__cause__).__name__}: {e.__cause__})" if e.__cause__ else ""
        error = f"{type(e).__name__}: {e}{cause}"
        environ["wsgi.errors"].write(f"{name}: {error}\n")
        return _reply(start_response, "503 Service Unavailable", {"store": name, "error": error})
