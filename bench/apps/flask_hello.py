"""Hello, world! through Flask: routing, request and response objects, so the
benchmark shows what a framework costs on top of the server."""

from flask import Flask

app = Flask(__name__)


@app.get("/")
def hello():
    return "Hello, world!\n", 200, {"Content-Type": "text/plain"}
