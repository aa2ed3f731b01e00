"""An unmodified single-file Django application (settings, urls and views in one module)."""

import django
from django.conf import settings
import time

from django.http import HttpResponse, JsonResponse, StreamingHttpResponse
from django.urls import path

settings.configure(
    DEBUG=False,
    SECRET_KEY="vw-test-only",
    ALLOWED_HOSTS=["*"],
    ROOT_URLCONF=__name__,
    MIDDLEWARE=["django.middleware.common.CommonMiddleware"],
    INSTALLED_APPS=[],
    USE_TZ=True,
)
django.setup()


def index(request):
    return HttpResponse("Hello from Django", content_type="text/plain")


def echo(request, name):
    return JsonResponse({"name": name, "method": request.method, "q": request.GET.get("q"),
                         "body": request.body.decode(), "host": request.get_host()})


def stream(request):
    def rows():
        for i in range(3):
            if i:
                time.sleep(0.3)
            yield f"row {i}\n"

    return StreamingHttpResponse(rows(), content_type="text/plain")


def whoami(request):
    """Who Django thinks the client is (behind a proxy: tests/python/test_proxy.py)."""
    return JsonResponse({"secure": request.is_secure(), "absolute": request.build_absolute_uri("/x/"),
                         "remote": request.META.get("REMOTE_ADDR"), "xff": request.META.get("HTTP_X_FORWARDED_FOR")})


urlpatterns = [path("", index), path("echo/<str:name>/", echo), path("stream/", stream), path("whoami/", whoami)]

from django.core.wsgi import get_wsgi_application  # noqa: E402

application = get_wsgi_application()
