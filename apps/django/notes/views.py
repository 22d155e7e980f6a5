from django.http import JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET

from .forms import NoteForm
from .models import Note


def index(request):
    """The notes and a form to add one (a POST protected by Django's CSRF check)."""
    if request.method == "POST":
        form = NoteForm(request.POST)
        if form.is_valid():
            note = Note.objects.create(**form.cleaned_data)
            return redirect("detail", note_id=note.id)
    else:
        form = NoteForm()
    return render(request, "notes/index.html", {"form": form, "notes": Note.objects.all()[:20]})


def detail(request, note_id):
    note = get_object_or_404(Note, id=note_id)
    return render(request, "notes/detail.html", {"note": note})


@require_GET
def api_notes(request):
    notes = [{"id": n.id, "author": n.author, "text": n.text} for n in Note.objects.all()]
    return JsonResponse({"count": len(notes), "notes": notes})
