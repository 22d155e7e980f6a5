"""A Falcon app: resources with typed routes, JSON media in and out, a form POST
(urlencoded media), a multipart upload, a redirect, and a custom error.

`gunicorn app:app`, or sandboxed: see README.md.
"""

import hashlib

import falcon


class Hello:
    def on_get(self, req, resp, name):
        resp.content_type = falcon.MEDIA_TEXT
        resp.text = f"Hello, {name}!\n"


class Items:
    def on_get(self, req, resp, item_id):
        if item_id > 100:
            raise falcon.HTTPNotFound(description=f"no item {item_id}")
        resp.media = {"id": item_id, "name": f"item {item_id}"}


class Echo:
    def on_post(self, req, resp):
        resp.media = {"received": req.get_media()}


class Form:
    def on_post(self, req, resp):
        form = req.get_media()
        resp.content_type = falcon.MEDIA_HTML
        resp.text = f"<p>Thanks, {form.get('name')}! You like {form.get('colour')}.</p>\n"


class Upload:
    def on_post(self, req, resp):
        result = {}
        for part in req.get_media():
            data = part.stream.read()
            if part.filename:
                result.update(filename=part.filename, size=len(data), sha256=hashlib.sha256(data).hexdigest())
            else:
                result[part.name] = data.decode()
        resp.media = result


class Old:
    def on_get(self, req, resp):
        raise falcon.HTTPMovedPermanently("/hello/redirected")


class Boom:
    def on_get(self, req, resp):
        raise ValueError("something broke")


def handle_value_error(req, resp, ex, params):
    raise falcon.HTTPBadRequest(title="bad value", description=str(ex))


app = falcon.App()
app.req_options.auto_parse_form_urlencoded = False
app.add_route("/hello/{name}", Hello())
app.add_route("/api/items/{item_id:int}", Items())
app.add_route("/api/echo", Echo())
app.add_route("/form", Form())
app.add_route("/upload", Upload())
app.add_route("/old", Old())
app.add_route("/boom", Boom())
app.add_error_handler(ValueError, handle_value_error)
