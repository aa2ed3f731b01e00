"""An unmodified Flask application."""

import time

from flask import Flask, Response, jsonify, request, stream_with_context

app = Flask(__name__)


@app.route("/")
def index():
    return "Hello from Flask"


@app.route("/whoami")
def whoami():
    from flask import url_for

    return jsonify(remote=request.remote_addr, external=url_for("index", _external=True), scheme=request.scheme)


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


@app.route("/events")
def events():
    who = request.args.get("who", "")

    @stream_with_context
    def generate():
        for i in range(3):
            if i:
                time.sleep(0.3)
            yield f"data: {i} {request.args.get('who', who)}\n\n"  # the request context stays available

    return Response(generate(), mimetype="text/event-stream")


@app.route("/wait")
def wait():
    time.sleep(0.3)  # a database query
    return "waited"
