"""A small journal: the packages a typical Flask project pulls in, unmodified.

- Flask-SQLAlchemy: users and entries in SQLite, in a directory the server grants
  read-write (JOURNAL_DB, e.g. /data/journal.db);
- Flask-Login: session login, pages that need it;
- Flask-WTF: forms with CSRF protection;
- Markdown: entries are written in Markdown and shown as HTML;
- python-dateutil: "when" is free text ("3 March 2024 5pm"), parsed;
- PyJWT: POST /api/token trades a name and password for a signed token that the
  JSON API verifies;
- pydantic: the JSON API validates what it is sent, answering 422 with the errors.

Configuration comes from the environment the operator grants: JOURNAL_SECRET (signs
sessions, CSRF tokens and API tokens), JOURNAL_DB, JOURNAL_USER (`name:password`,
the account created with the tables).
"""

import datetime
import os

import jwt
import markdown
from dateutil import parser as dateparser
from dateutil.relativedelta import relativedelta
from flask import Flask, abort, jsonify, redirect, render_template, request, url_for
from flask_login import LoginManager, UserMixin, current_user, login_required, login_user, logout_user
from flask_sqlalchemy import SQLAlchemy
from flask_wtf import FlaskForm
from markdown.extensions.fenced_code import FencedCodeExtension
from markdown.extensions.tables import TableExtension
from pydantic import BaseModel, ValidationError, constr
from werkzeug.security import check_password_hash, generate_password_hash
from wtforms import PasswordField, StringField, TextAreaField
from wtforms.validators import DataRequired, Length

# Tokens are short-lived: a leaked one is useful for an hour at most.
TOKEN_LIFETIME = datetime.timedelta(hours=1)

app = Flask(__name__)
app.config.update(
    SECRET_KEY=os.environ.get("JOURNAL_SECRET", "dev-only-not-secret"),
    SQLALCHEMY_DATABASE_URI="sqlite:///" + os.environ.get("JOURNAL_DB", "/data/journal.db"),
)
db = SQLAlchemy(app)
login_manager = LoginManager(app)
login_manager.login_view = "login"


class User(db.Model, UserMixin):
    id = db.Column(db.Integer, primary_key=True)
    name = db.Column(db.String(80), unique=True, nullable=False)
    password_hash = db.Column(db.String(200), nullable=False)


class Entry(db.Model):
    id = db.Column(db.Integer, primary_key=True)
    author_id = db.Column(db.Integer, db.ForeignKey("user.id"), nullable=False)
    title = db.Column(db.String(200), nullable=False)
    body = db.Column(db.Text, nullable=False)
    happened = db.Column(db.DateTime, nullable=False)

    def as_json(self):
        return {"id": self.id, "title": self.title, "body": self.body, "happened": self.happened.isoformat()}


class LoginForm(FlaskForm):
    name = StringField("Name", validators=[DataRequired()])
    password = PasswordField("Password", validators=[DataRequired()])


class EntryForm(FlaskForm):
    title = StringField("Title", validators=[DataRequired(), Length(max=200)])
    when = StringField("When", validators=[DataRequired()])
    body = TextAreaField("Body (Markdown)", validators=[DataRequired()])


class EntryIn(BaseModel):
    title: constr(min_length=1, max_length=200)
    body: str
    happened: datetime.datetime


# The database file lives in a granted directory, which exists only when serving
# (not while `wsgi-wasm build` imports this module): tables are made on first use.
_ready = False


@app.before_request
def create_tables():
    global _ready
    if _ready:
        return
    db.create_all()
    name, _, password = os.environ.get("JOURNAL_USER", "").partition(":")
    if name and password and not User.query.filter_by(name=name).first():
        # pbkdf2 rather than werkzeug's default scrypt: both are standard, this one
        # the sandbox's hashlib runs on the host at native speed.
        db.session.add(User(name=name, password_hash=generate_password_hash(password, method="pbkdf2:sha256")))
        db.session.commit()
    _ready = True


@login_manager.user_loader
def load_user(user_id):
    return db.session.get(User, int(user_id))


def check_login(name, password):
    user = User.query.filter_by(name=name).first()
    return user if user and check_password_hash(user.password_hash, password) else None


def parse_when(text):
    """`dateutil` reads what people type; "N days ago" is ours."""
    words = text.split()
    if len(words) == 3 and words[0].isdigit() and words[1] in ("day", "days") and words[2] == "ago":
        return datetime.datetime.now().replace(microsecond=0) - relativedelta(days=int(words[0]))
    return dateparser.parse(text)


@app.get("/")
def index():
    entries = Entry.query.order_by(Entry.happened.desc()).all()
    return render_template("index.html", entries=entries)


@app.route("/login", methods=["GET", "POST"])
def login():
    form = LoginForm()
    if form.validate_on_submit():
        user = check_login(form.name.data, form.password.data)
        if user:
            login_user(user)
            return redirect(url_for("new_entry"))
        form.password.errors.append("wrong name or password")
    return render_template("login.html", form=form), 400 if request.method == "POST" else 200


@app.post("/logout")
@login_required
def logout():
    logout_user()
    return redirect(url_for("index"))


@app.route("/entries/new", methods=["GET", "POST"])
@login_required
def new_entry():
    form = EntryForm()
    if form.validate_on_submit():
        try:
            happened = parse_when(form.when.data)
        except (ValueError, OverflowError):
            form.when.errors.append("not a date I can read")
        else:
            entry = Entry(author_id=current_user.id, title=form.title.data, body=form.body.data, happened=happened)
            db.session.add(entry)
            db.session.commit()
            return redirect(url_for("show_entry", entry_id=entry.id))
    status = 400 if request.method == "POST" else 200
    return render_template("new.html", form=form), status


@app.get("/entries/<int:entry_id>")
def show_entry(entry_id):
    entry = db.session.get(Entry, entry_id) or abort(404)
    # Extension objects, not names: Markdown imports named extensions on first use,
    # and a module first imported at run time is not in the component.
    html = markdown.markdown(entry.body, extensions=[FencedCodeExtension(), TableExtension()])
    return render_template("entry.html", entry=entry, html=html)


@app.post("/api/token")
def api_token():
    data = request.get_json(silent=True) or {}
    user = check_login(str(data.get("name", "")), str(data.get("password", "")))
    if not user:
        return jsonify(error="wrong name or password"), 401
    now = datetime.datetime.now(datetime.timezone.utc)
    claims = {"sub": str(user.id), "name": user.name, "iat": now, "exp": now + TOKEN_LIFETIME}
    return jsonify(token=jwt.encode(claims, app.config["SECRET_KEY"], algorithm="HS256"))


def api_user():
    header = request.headers.get("Authorization", "")
    if not header.startswith("Bearer "):
        return None, "a Bearer token is needed (POST /api/token)"
    try:
        claims = jwt.decode(header[len("Bearer ") :], app.config["SECRET_KEY"], algorithms=["HS256"])
    except jwt.InvalidTokenError as exc:
        return None, f"invalid token: {exc}"
    return db.session.get(User, int(claims["sub"])), None


@app.get("/api/entries")
def api_entries():
    user, error = api_user()
    if not user:
        return jsonify(error=error), 401
    entries = Entry.query.filter_by(author_id=user.id).order_by(Entry.happened).all()
    return jsonify(user=user.name, entries=[e.as_json() for e in entries])


@app.post("/api/entries")
def api_add_entry():
    user, error = api_user()
    if not user:
        return jsonify(error=error), 401
    try:
        data = EntryIn.parse_raw(request.get_data(), content_type="application/json")
    except ValidationError as exc:
        return jsonify(errors=[{"field": ".".join(map(str, e["loc"])), "error": e["msg"]} for e in exc.errors()]), 422
    entry = Entry(author_id=user.id, title=data.title, body=data.body, happened=data.happened)
    db.session.add(entry)
    db.session.commit()
    return jsonify(entry.as_json()), 201


@app.get("/api/versions")
def api_versions():
    """What the build installed, to compare with requirements.txt."""
    from importlib.metadata import version

    names = ["Flask", "Flask-SQLAlchemy", "SQLAlchemy", "Flask-Login", "Flask-WTF", "WTForms", "Markdown"]
    names += ["python-dateutil", "PyJWT", "pydantic"]
    return jsonify({name: version(name) for name in names})
