<p>Thanks, {{name}}! You like {{colour}}.</p>
