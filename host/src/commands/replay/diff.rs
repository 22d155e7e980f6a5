//! A unified diff of two responses, line by line, for `wsgi-wasm replay`.

use std::fmt::Write;

use wsgi_wasm::wsgi::recording::RecordedResponse;

/// Lines of context around each change, as `diff -u`.
const CONTEXT: usize = 3;
/// Most lines (of each side, once the common start and end are set aside) compared
/// line by line: the comparison table takes their product in memory (2000 x 2000
/// x 2 bytes = 8 MB). A longer changed stretch is shown whole, removed then added.
const MAX_COMPARED_LINES: usize = 2000;

/// The response as lines: status, headers, a blank line, the body.
pub fn lines(response: &RecordedResponse) -> Vec<String> {
    let mut lines = vec![format!("{} {}", response.status, response.reason)];
    lines.extend(response.headers.iter().map(|(name, value)| format!("{name}: {value}")));
    lines.push(String::new());
    let body = match std::str::from_utf8(&response.body) {
        Ok(text) => text.to_owned(),
        // Latin-1: every byte shows as one character, so no difference is hidden.
        Err(_) => response.body.iter().map(|&b| char::from(b)).collect(),
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

#[derive(Clone, Copy, PartialEq)]
enum Op {
    Same,
    Removed,
    Added,
}

/// The unified diff from `old` to `new`, with `---`/`+++` labels.
pub fn unified(old: &[String], new: &[String], old_label: &str, new_label: &str) -> String {
    let ops = edit_script(old, new);
    let mut out = format!("--- {old_label}\n+++ {new_label}\n");
    // Hunks: runs of changes with CONTEXT lines around them, merged when close.
    let changed: Vec<usize> = (0..ops.len()).filter(|&i| ops[i].0 != Op::Same).collect();
    let mut i = 0;
    while i < changed.len() {
        let start = changed[i].saturating_sub(CONTEXT);
        let mut end = changed[i];
        while i < changed.len() && changed[i] <= end + 2 * CONTEXT {
            end = changed[i];
            i += 1;
        }
        let end = (end + CONTEXT + 1).min(ops.len());
        let (old_start, new_start) = positions(&ops[..start]);
        let (old_len, new_len) = positions(&ops[start..end]);
        let _ = writeln!(out, "@@ -{},{old_len} +{},{new_len} @@", old_start + 1, new_start + 1);
        for (op, line) in &ops[start..end] {
            let sign = match op {
                Op::Same => ' ',
                Op::Removed => '-',
                Op::Added => '+',
            };
            let _ = writeln!(out, "{sign}{line}");
        }
    }
    out
}

/// Lines of each side in `ops`.
fn positions(ops: &[(Op, &str)]) -> (usize, usize) {
    let old = ops.iter().filter(|(op, _)| *op != Op::Added).count();
    let new = ops.iter().filter(|(op, _)| *op != Op::Removed).count();
    (old, new)
}

fn edit_script<'a>(old: &'a [String], new: &'a [String]) -> Vec<(Op, &'a str)> {
    let prefix = old.iter().zip(new).take_while(|(a, b)| a == b).count();
    let suffix = old[prefix..]
        .iter()
        .rev()
        .zip(new[prefix..].iter().rev())
        .take_while(|(a, b)| a == b)
        .count();
    let (a, b) = (&old[prefix..old.len() - suffix], &new[prefix..new.len() - suffix]);
    let mut ops: Vec<(Op, &str)> = old[..prefix].iter().map(|l| (Op::Same, l.as_str())).collect();
    if a.len() > MAX_COMPARED_LINES || b.len() > MAX_COMPARED_LINES {
        ops.extend(a.iter().map(|l| (Op::Removed, l.as_str())));
        ops.extend(b.iter().map(|l| (Op::Added, l.as_str())));
    } else {
        // Longest common subsequence, from the end, then walked from the start.
        let width = b.len() + 1;
        let mut table = vec![0u16; (a.len() + 1) * width];
        for i in (0..a.len()).rev() {
            for j in (0..b.len()).rev() {
                table[i * width + j] = if a[i] == b[j] {
                    table[(i + 1) * width + j + 1] + 1
                } else {
                    table[(i + 1) * width + j].max(table[i * width + j + 1])
                };
            }
        }
        let (mut i, mut j) = (0, 0);
        while i < a.len() || j < b.len() {
            if i < a.len() && j < b.len() && a[i] == b[j] {
                ops.push((Op::Same, a[i].as_str()));
                (i, j) = (i + 1, j + 1);
            } else if i < a.len() && (j == b.len() || table[(i + 1) * width + j] >= table[i * width + j + 1]) {
                // Removed lines first on a tie, as diff -u shows them.
                ops.push((Op::Removed, a[i].as_str()));
                i += 1;
            } else {
                ops.push((Op::Added, b[j].as_str()));
                j += 1;
            }
        }
    }
    ops.extend(old[old.len() - suffix..].iter().map(|l| (Op::Same, l.as_str())));
    ops
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
