from django.urls import path

from . import views

urlpatterns = [
    path("upload", views.upload),
    path("download/<int:pk>", views.download),
    path("delete/<int:pk>", views.delete),
]
