def helper():
    raise ValueError("configuration missing")


helper()
app = None
