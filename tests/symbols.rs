//! The exported dynamic symbols of libnpuprof.so and the declarations of include/npuprof.h agree exactly.

mod common;
use std::collections::BTreeSet;
use std::process::Command;

fn header_functions() -> BTreeSet<String> {
    let h = std::fs::read_to_string(common::repo().join("include/npuprof.h")).unwrap();
    // Strip comments, then take every `name(` that starts a declaration at top level.
    let mut text = String::new();
    let mut rest = h.as_str();
    while let Some(i) = rest.find("/*") {
        text.push_str(&rest[..i]);
        rest = &rest[i..];
        let end = rest.find("*/").expect("closed comment") + 2;
        rest = &rest[end..];
    }
    text.push_str(rest);
    // Preprocessor lines end without ';': drop them, or they would swallow the declaration after them.
    let text: String = text
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .map(|l| format!("{l}\n"))
        .collect();
    text.split(';')
        .filter_map(|decl| {
            let decl = decl.trim();
            let open = decl.find('(')?;
            let name = decl[..open]
                .trim_end()
                .rsplit(|c: char| !(c.is_alphanumeric() || c == '_'))
                .next()?;
            (!decl.starts_with('#') && !decl.contains("enum ")).then(|| name.to_string())
        })
        .filter(|n| !n.is_empty())
        .collect()
}

#[test]
fn nm_exports_match_the_header_in_both_directions() {
    let lib = common::lib();
    let out = Command::new("nm")
        .args(["-D", "--defined-only"])
        .arg(&lib)
        .output()
        .expect("nm (binutils) is installed");
    assert!(out.status.success());
    let exported: BTreeSet<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() == 3).then(|| f[2].split('@').next().unwrap().to_string())
        })
        .collect();
    let declared = header_functions();
    assert_eq!(declared.len(), 16, "header parse: {declared:?}");
    let only_lib: Vec<_> = exported.difference(&declared).collect();
    let only_header: Vec<_> = declared.difference(&exported).collect();
    assert!(
        only_lib.is_empty() && only_header.is_empty(),
        "exported but not declared: {only_lib:?}; declared but not exported: {only_header:?}"
    );
    assert!(exported.iter().all(|s| s.starts_with("npuprof_")));
}

#[test]
fn library_is_linked_nodelete() {
    let lib = common::lib();
    let out = Command::new("readelf")
        .arg("-d")
        .arg(&lib)
        .output()
        .expect("readelf");
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(s.contains("NODELETE"), "-z nodelete missing:\n{s}");
}

#[test]
fn header_compiles_as_c99_and_cpp() {
    let dir = tempfile::tempdir().unwrap();
    let inc = common::repo().join("include");
    for (ext, std, compiler) in [("c", "-std=c99", "cc"), ("cpp", "-std=c++11", "c++")] {
        let src = dir.path().join(format!("h.{ext}"));
        std::fs::write(
            &src,
            "#include \"npuprof.h\"\nint main(void) { return NPUPROF_OK + (int)sizeof(&npuprof_start); }\n",
        )
        .unwrap();
        let o = Command::new(compiler)
            .args([std, "-Wall", "-Wextra", "-pedantic", "-Werror", "-c", "-o"])
            .arg(dir.path().join(format!("h_{ext}.o")))
            .arg(format!("-I{}", inc.display()))
            .arg(&src)
            .output()
            .expect("compiler");
        assert!(
            o.status.success(),
            "{compiler}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
}

/// `enum npuprof_status` in the header, `npuprof_strerror` and the Python package's constants agree: every
/// code the header declares has its own description starting with its name, and the same value in Python.
#[test]
fn status_codes_agree_between_header_strerror_and_python() {
    let h = std::fs::read_to_string(common::repo().join("include/npuprof.h")).unwrap();
    let py = std::fs::read_to_string(common::repo().join("python/npuprof/__init__.py")).unwrap();
    let body = &h[h.find("enum npuprof_status {").unwrap()..];
    let body = &body[..body.find("};").unwrap()];
    let mut codes = vec![];
    for line in body.lines() {
        let Some((name, rest)) = line.trim().split_once(" = ") else {
            continue;
        };
        let value: i32 = rest
            .trim_start()
            .split(|c: char| !c.is_ascii_digit())
            .next()
            .unwrap()
            .parse()
            .unwrap();
        codes.push((name.trim().to_string(), value));
    }
    assert_eq!(codes.len(), npuprof::error::Status::ALL.len(), "{codes:?}");
    for (name, value) in &codes {
        let s = npuprof::error::Status::describe(*value).to_str().unwrap();
        assert!(s.starts_with(&format!("{name}:")), "{name} = {value}: {s}");
        let short = name.strip_prefix("NPUPROF_").unwrap();
        assert!(
            py.lines().any(|l| l.trim() == format!("{short} = {value}")),
            "python/npuprof lacks {short} = {value}"
        );
    }
}
