import os

from django.http import HttpResponse


def hello(request):
    return HttpResponse("hello from worker %d\n" % os.getpid(),
                        content_type="text/plain")
