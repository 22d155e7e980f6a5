"""A Flask app exercising what real apps use: routes, JSON in and out, a form POST,
a multipart file upload, Jinja2 templates, a signed-cookie session, redirects, a
streamed response, error handlers and a static file.

Runs unchanged under any WSGI server: `gunicorn app:app` or, sandboxed,
`wsgi-wasm build app:app -r requirements.txt -o flask.wasm && wsgi-wasm serve flask.wasm`.
"""

import hashlib

from flask import (
    Flask,
    Response,
    abort,
    jsonify,
    redirect,
    render_template,
    request,
    session,
    stream_with_context,
    url_for,
)

app = Flask(__name__)
# A fixed key so sessions survive restarts and work across instances; a real
# deployment reads it from its configuration.
app.secret_key = "wsgi-wasm-example-not-secret"


@app.get("/")
def index():
    return render_template("index.html", title="Flask in a sandbox", items=["routes", "templates", "sessions"])


@app.get("/hello/<name>")
def hello(name):
    return f"Hello, {name}!\n"


@app.post("/api/echo")
def api_echo():
    data = request.get_json()
    return jsonify(received=data, keys=sorted(data) if isinstance(data, dict) else None)


@app.get("/api/items/<int:item_id>")
def api_item(item_id):
    if item_id > 100:
        abort(404, description=f"no item {item_id}")
    return {"id": item_id, "name": f"item {item_id}", "tags": ["a", "b"]}


@app.route("/form", methods=["GET", "POST"])
def form():
    if request.method == "POST":
        name = request.form.get("name", "")
        colour = request.form.get("colour", "")
        return render_template("form_result.html", name=name, colour=colour)
    return render_template("form.html")


@app.post("/upload")
def upload():
    f = request.files.get("file")
    if f is None or not f.filename:
        return {"error": "no file"}, 400
    data = f.read()
    return {
        "filename": f.filename,
        "content_type": f.mimetype,
        "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "note": request.form.get("note"),
    }


@app.get("/session")
def session_view():
    return {"visits": session.get("visits", 0), "user": session.get("user")}


@app.post("/session/login")
def session_login():
    session["user"] = request.form.get("user", "anonymous")
    session["visits"] = session.get("visits", 0) + 1
    return redirect(url_for("session_view"))


@app.get("/session/visit")
def session_visit():
    session["visits"] = session.get("visits", 0) + 1
    return {"visits": session["visits"]}


@app.get("/old-page")
def old_page():
    return redirect(url_for("hello", name="redirected"), code=301)


@app.get("/stream")
def stream():
    count = request.args.get("n", 5, type=int)

    @stream_with_context
    def generate():
        for i in range(count):
            yield f"line {i} of {count} for {request.path}\n"

    return Response(generate(), mimetype="text/plain")


@app.get("/boom")
def boom():
    raise RuntimeError("something broke")


@app.get("/teapot")
def teapot():
    abort(418)


@app.errorhandler(404)
def not_found(error):
    return render_template("error.html", code=404, message=error.description), 404


@app.errorhandler(418)
def teapot_handler(error):
    return {"error": "teapot", "code": 418}, 418


@app.errorhandler(500)
def server_error(error):
    return render_template("error.html", code=500, message="the app failed; see the server log"), 500
