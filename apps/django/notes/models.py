from django.db import models


class Note(models.Model):
    author = models.CharField(max_length=100)
    text = models.TextField(max_length=1000)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-id"]

    def __str__(self):
        return f"{self.author}: {self.text[:40]}"
