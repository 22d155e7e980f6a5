"""A 1 MiB response streamed as 16 chunks of 64 KiB: measures how a server moves a
large body from the app to the socket (each chunk is a separate write).

The Content-Length is declared so every server frames the body the same way (no
chunked encoding), and the client gets a length to check."""

CHUNK = b"x" * (64 * 1024)
CHUNKS = 16
HEADERS = [("Content-Type", "application/octet-stream"), ("Content-Length", str(len(CHUNK) * CHUNKS))]


def app(environ, start_response):
    start_response("200 OK", HEADERS)
    return (CHUNK for _ in range(CHUNKS))
