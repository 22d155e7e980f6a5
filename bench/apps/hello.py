"""Hello, world! as a bare WSGI callable: the cheapest possible app, so the benchmark
measures the server (parsing, environ, the call, the response) rather than the app."""

BODY = b"Hello, world!\n"
HEADERS = [("Content-Type", "text/plain"), ("Content-Length", str(len(BODY)))]


def app(environ, start_response):
    start_response("200 OK", HEADERS)
    return [BODY]
