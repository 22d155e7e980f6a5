<!doctype html>
<title>{{title}}</title>
<h1>{{title}}</h1>
<ul>
% for item in items:
  <li>{{item.upper()}}</li>
% end
</ul>
<p>Escaped: {{"<b>"}}</p>
