"""An unmodified Flask application."""

from flask import Flask, jsonify, request

app = Flask(__name__)


@app.route("/")
def index():
    return "Hello from Flask"


@app.route("/items/<int:item_id>")
def item(item_id):
    return jsonify(id=item_id, q=request.args.get("q"))


@app.route("/form", methods=["POST"])
def form():
    f = request.files.get("upload")
    return jsonify(name=request.form.get("name"), file=f.filename if f else None,
                   size=len(f.read()) if f else 0)


@app.route("/json", methods=["POST"])
def js():
    return jsonify(got=request.get_json())
