"""A JSON formatter, as a log pipeline's would be (tests/python/test_logging.py): dictConfig
makes it with `()`."""

import json
import logging


class JsonFormatter(logging.Formatter):
    def format(self, record):
        out = {"logger": record.name, "level": record.levelname, "message": record.getMessage()}
        if record.exc_info:
            out["traceback"] = self.formatException(record.exc_info)
        return json.dumps(out)
