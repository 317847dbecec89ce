//! Every relative link in README.md and docs/*.md resolves: the file exists and, for `file#anchor` or
//! `#anchor`, the target file has a heading with that GitHub anchor. External links (`http:`, `https:`,
//! `mailto:`) are not followed. Links inside code (fenced blocks and `inline code`) are not links.

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The markdown files whose links are checked.
fn pages() -> Vec<PathBuf> {
    let mut v = vec![root().join("README.md")];
    let mut docs: Vec<PathBuf> = fs::read_dir(root().join("docs"))
        .expect("docs/")
        .map(|e| e.expect("docs/ entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.sort();
    v.extend(docs);
    v
}

/// The page's lines outside fenced code blocks, with inline code spans blanked out.
fn prose(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut fenced = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            continue;
        }
        let mut s = String::new();
        let mut in_code = false;
        for c in line.chars() {
            if c == '`' {
                in_code = !in_code;
                s.push(' ');
            } else {
                s.push(if in_code { ' ' } else { c });
            }
        }
        out.push(s);
    }
    out
}

/// GitHub's anchor for a heading: lower case, punctuation other than `-` and `_` removed, spaces → `-`.
fn slug(heading: &str) -> String {
    heading
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            '-' | '_' => Some(c),
            c if c.is_alphanumeric() => Some(c),
            _ => None,
        })
        .flat_map(char::to_lowercase)
        .collect()
}

/// Every heading anchor of a page (a repeated heading gets `-1`, `-2`, ... as on GitHub).
fn anchors(text: &str) -> HashSet<String> {
    let mut set = HashSet::new();
    let mut fenced = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced || !line.starts_with('#') {
            continue;
        }
        let base = slug(line.trim_start_matches('#').trim());
        let mut a = base.clone();
        let mut n = 0;
        while !set.insert(a.clone()) {
            n += 1;
            a = format!("{base}-{n}");
        }
    }
    set
}

/// The targets of `[text](target)` links on a line.
fn links(line: &str) -> Vec<String> {
    let mut v = Vec::new();
    let mut rest = line;
    while let Some(i) = rest.find("](") {
        let after = &rest[i + 2..];
        match after.find(')') {
            Some(j) => {
                v.push(after[..j].trim().to_string());
                rest = &after[j + 1..];
            }
            None => break,
        }
    }
    v
}

fn check(page: &Path, target: &str) -> Result<(), String> {
    if target.starts_with("http://")
        || target.starts_with("https://")
        || target.starts_with("mailto:")
    {
        return Ok(());
    }
    let (file, anchor) = match target.split_once('#') {
        Some((f, a)) => (f, Some(a)),
        None => (target, None),
    };
    let path = if file.is_empty() {
        page.to_path_buf()
    } else {
        page.parent().expect("a page's directory").join(file)
    };
    if !path.exists() {
        return Err(format!("{target}: {} does not exist", path.display()));
    }
    if let Some(a) = anchor {
        let text = fs::read_to_string(&path).map_err(|e| format!("{target}: {e}"))?;
        if !anchors(&text).contains(a) {
            return Err(format!(
                "{target}: no heading with anchor #{a} in {}",
                path.display()
            ));
        }
    }
    Ok(())
}

#[test]
fn every_relative_link_in_readme_and_docs_resolves() {
    let mut problems = Vec::new();
    let mut checked = 0;
    for page in pages() {
        let text = fs::read_to_string(&page).expect("a page");
        for (n, line) in prose(&text).iter().enumerate() {
            for target in links(line) {
                checked += 1;
                if let Err(e) = check(&page, &target) {
                    problems.push(format!("{}:{}: {e}", page.display(), n + 1));
                }
            }
        }
    }
    assert!(
        checked > 20,
        "only {checked} links found: is the parser broken?"
    );
    assert!(
        problems.is_empty(),
        "broken links:\n{}",
        problems.join("\n")
    );
}

#[test]
fn slugs_follow_github() {
    assert_eq!(slug("The MSPTI backend (CANN)"), "the-mspti-backend-cann");
    assert_eq!(
        slug("The `npuprof` command line"),
        "the-npuprof-command-line"
    );
    assert_eq!(
        slug("Recovering a profile whose process died"),
        "recovering-a-profile-whose-process-died"
    );
    assert_eq!(
        slug("3.4 Activity record layouts"),
        "34-activity-record-layouts"
    );
}
