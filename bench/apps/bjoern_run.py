"""bjoern has no CLI: `python bjoern_run.py PORT` serves wsgi:app on 127.0.0.1."""
import sys
import bjoern
from wsgi import app
bjoern.run(app, "127.0.0.1", int(sys.argv[1]))
