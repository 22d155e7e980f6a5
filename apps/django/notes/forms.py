from django import forms


class NoteForm(forms.Form):
    author = forms.CharField(max_length=100)
    text = forms.CharField(widget=forms.Textarea, max_length=1000)
