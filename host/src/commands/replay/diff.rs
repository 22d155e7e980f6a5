//! A unified diff of two responses, line by line, for `wsgi-wasm replay`.

use std::fmt::Write;
use std::time::Duration;

use similar::{ChangeTag, TextDiff};

use wsgi_wasm::wsgi::environ::latin1;
use wsgi_wasm::wsgi::recording::RecordedResponse;

/// Lines of context around each change, as `diff -u`.
const CONTEXT: usize = 3;
/// Time the diff may take: past it, similar gives up on the shortest edit script
/// and shows the rest as removed then added. A person reads the result; a second
/// is long enough for any response one would read and bounds a huge one.
const MAX_DIFF_TIME: Duration = Duration::from_secs(1);

/// The response as lines: status, headers, a blank line, the body.
pub fn lines(response: &RecordedResponse) -> Vec<String> {
    let mut lines = vec![format!("{} {}", response.status, response.reason)];
    lines.extend(response.headers.iter().map(|(name, value)| format!("{name}: {value}")));
    lines.push(String::new());
    let body = match std::str::from_utf8(&response.body) {
        Ok(text) => text.to_owned(),
        // Latin-1: every byte shows as one character, so no difference is hidden.
        Err(_) => latin1(&response.body),
    };
    lines.extend(body.split_inclusive('\n').map(|line| match line.strip_suffix('\n') {
        Some(line) => line.to_owned(),
        None => format!("{line}\\ (no newline at end)"),
    }));
    if !response.complete {
        lines.push("[response cut off here]".to_owned());
    }
    lines
}

/// The unified diff from `old` to `new`, with `---`/`+++` labels.
pub fn unified(old: &[String], new: &[String], old_label: &str, new_label: &str) -> String {
    let old: Vec<&str> = old.iter().map(String::as_str).collect();
    let new: Vec<&str> = new.iter().map(String::as_str).collect();
    let diff = TextDiff::configure().timeout(MAX_DIFF_TIME).diff_slices(&old, &new);
    let mut out = format!("--- {old_label}\n+++ {new_label}\n");
    for hunk in diff.unified_diff().context_radius(CONTEXT).iter_hunks() {
        let _ = writeln!(out, "{}", hunk.header());
        for change in hunk.iter_changes() {
            let sign = match change.tag() {
                ChangeTag::Equal => ' ',
                ChangeTag::Delete => '-',
                ChangeTag::Insert => '+',
            };
            let _ = writeln!(out, "{sign}{}", change.value());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(lines: &[&str]) -> Vec<String> {
        lines.iter().map(|l| l.to_string()).collect()
    }

    #[test]
    fn shows_a_changed_line_with_context() {
        let old = text(&["200 OK", "A: 1", "", "a", "b", "c", "d", "e", "f", "g"]);
        let mut new = old.clone();
        new[7] = "E".into();
        let diff = unified(&old, &new, "recorded", "replayed");
        assert_eq!(
            diff,
            "--- recorded\n+++ replayed\n@@ -5,6 +5,6 @@\n b\n c\n d\n-e\n+E\n f\n g\n"
        );
    }

    #[test]
    fn identical_lines_give_no_hunk() {
        let lines = text(&["200 OK", ""]);
        assert_eq!(unified(&lines, &lines, "a", "b"), "--- a\n+++ b\n");
    }

    #[test]
    fn responses_become_lines() {
        let response = RecordedResponse {
            status: 200,
            reason: "OK".into(),
            headers: vec![("content-type".into(), "text/plain".into())],
            body: b"one\ntwo".to_vec(),
            complete: false,
        };
        assert_eq!(
            lines(&response),
            text(&[
                "200 OK",
                "content-type: text/plain",
                "",
                "one",
                "two\\ (no newline at end)",
                "[response cut off here]"
            ])
        );
    }
}
