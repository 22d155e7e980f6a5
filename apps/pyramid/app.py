"""A Pyramid app configured imperatively: routes, a string and a JSON renderer, a
form POST, a signed-cookie session, a redirect and a not-found view.

`gunicorn app:app`, or sandboxed: see README.md.
"""

from pyramid.config import Configurator
from pyramid.httpexceptions import HTTPFound, HTTPNotFound
from pyramid.response import Response
from pyramid.session import SignedCookieSessionFactory


def hello(request):
    return Response(f"Hello, {request.matchdict['name']}!\n", content_type="text/plain")


def item(request):
    item_id = int(request.matchdict["item_id"])
    if item_id > 100:
        raise HTTPNotFound(f"no item {item_id}")
    return {"id": item_id, "name": f"item {item_id}"}


def echo(request):
    return {"received": request.json_body}


def form(request):
    name = request.POST.get("name")
    colour = request.POST.get("colour")
    return Response(f"<p>Thanks, {name}! You like {colour}.</p>\n", content_type="text/html")


def visit(request):
    request.session["visits"] = request.session.get("visits", 0) + 1
    return {"visits": request.session["visits"]}


def old(request):
    return HTTPFound(location=request.route_url("hello", name="redirected"))


def not_found(request):
    return Response(f"not found: {request.path}\n", status=404, content_type="text/plain")


def make_app():
    with Configurator() as config:
        config.set_session_factory(SignedCookieSessionFactory("wsgi-wasm-example-not-secret"))
        config.add_route("hello", "/hello/{name}")
        config.add_route("item", "/api/items/{item_id:\\d+}")
        config.add_route("echo", "/api/echo")
        config.add_route("form", "/form")
        config.add_route("visit", "/visit")
        config.add_route("old", "/old")
        config.add_view(hello, route_name="hello")
        config.add_view(item, route_name="item", renderer="json")
        config.add_view(echo, route_name="echo", renderer="json", request_method="POST")
        config.add_view(form, route_name="form", request_method="POST")
        config.add_view(visit, route_name="visit", renderer="json")
        config.add_view(old, route_name="old")
        config.add_notfound_view(not_found)
        return config.make_wsgi_app()


app = make_app()
