"""A Bottle app: routes with typed wildcards, templates from views/ (Bottle's default
place, relative to the working directory), JSON, a form POST, a signed cookie, a
redirect and an error handler.

`gunicorn app:app`, or sandboxed: see README.md.
"""

from bottle import Bottle, abort, redirect, request, response, template

SECRET = "wsgi-wasm-example-not-secret"
app = Bottle()


@app.get("/")
def index():
    return template("index", title="Bottle in a sandbox", items=["routes", "templates", "cookies"])


@app.get("/hello/<name>")
def hello(name):
    return f"Hello, {name}!\n"


@app.get("/api/items/<item_id:int>")
def item(item_id):
    if item_id > 100:
        abort(404, f"no item {item_id}")
    return {"id": item_id, "name": f"item {item_id}"}


@app.post("/api/echo")
def echo():
    return {"received": request.json}


@app.post("/form")
def form():
    return template("result", name=request.forms.getunicode("name"), colour=request.forms.getunicode("colour"))


@app.get("/counter")
def counter():
    count = int(request.get_cookie("count", default="0", secret=SECRET)) + 1
    response.set_cookie("count", str(count), secret=SECRET, path="/")
    return {"count": count}


@app.get("/old")
def old():
    redirect("/hello/redirected", 301)


@app.error(404)
def not_found(error):
    response.content_type = "text/plain"
    return f"not found: {error.body}\n"
