//! The binary layouts npuprof reads from vendor memory, checked against a source other than our own notes
//! (docs/layouts.md says which layout rests on which sources):
//!
//! * MSPTI activity records (`src/backend/mspti/records.rs`, the fake `tests/c/fake_mspti.c` and
//!   docs/ascend-api.md §3.4 all come from one reference): against the C compiler's layout of the
//!   declarations Huawei publishes in `mspti_activity.h` (transcribed in tests/c/layouts/mspti_published.h;
//!   `NPUPROF_MSPTI_INCLUDE=<dir holding mspti_activity.h and mspti_result.h>` uses the published file itself).
//! * The 272-byte feature record of `aclprofGetSupportedFeatures` (`src/backend/acl/features.rs`): the bytes
//!   of real C++ objects declared as torch_npu and MindSpore declare them must decode.

mod common;
use common::*;
use npuprof::backend::acl::features::{self, Layout};
use npuprof::backend::mspti::records::{self, *};
use std::collections::BTreeMap;
use std::mem::{offset_of, size_of};
use std::path::PathBuf;

/// (record, member) → (offset, width), and record → size, as the C compiler printed them.
struct CLayout {
    source: String,
    sizes: BTreeMap<String, usize>,
    fields: BTreeMap<(String, String), (usize, usize)>,
    kinds: BTreeMap<u32, String>,
    consts: BTreeMap<String, u32>,
}

fn c_layout() -> CLayout {
    let include = std::env::var("NPUPROF_MSPTI_INCLUDE").ok();
    let mut extra = vec!["-Wno-packed-not-aligned".to_string()];
    let mut defines = vec![];
    let name = match &include {
        Some(dir) => {
            extra.push(format!("-I{dir}"));
            defines.push("MSPTI_REAL_HEADER");
            "layouts/mspti_layouts_real"
        }
        None => {
            extra.push(format!("-I{}", repo().join("tests/c/layouts").display()));
            "layouts/mspti_layouts"
        }
    };
    std::fs::create_dir_all(target_dir().join("ctests/layouts")).unwrap();
    let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
    let prog = build_c(name, &["tests/c/layouts/mspti_layouts.c"], &defines, &extra);
    let o = run(&prog, &[], &[]);
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(o.status.success(), "{out}");
    let mut l = CLayout {
        source: String::new(),
        sizes: BTreeMap::new(),
        fields: BTreeMap::new(),
        kinds: BTreeMap::new(),
        consts: BTreeMap::new(),
    };
    for line in out.lines() {
        let w: Vec<&str> = line.split_whitespace().collect();
        match w.as_slice() {
            ["source", rest @ ..] => l.source = rest.join(" "),
            ["size", t, n] => {
                l.sizes.insert(t.to_string(), n.parse().unwrap());
            }
            ["field", t, m, off, width] => {
                l.fields.insert(
                    (t.to_string(), m.to_string()),
                    (off.parse().unwrap(), width.parse().unwrap()),
                );
            }
            ["kind", k, t] => {
                l.kinds.insert(k.parse().unwrap(), t.to_string());
            }
            ["const", name, v] => {
                l.consts.insert(name.to_string(), v.parse().unwrap());
            }
            _ => panic!("unexpected line {line:?}"),
        }
    }
    l
}

/// The width of a member of a packed record (read by value: a packed member cannot be referenced).
macro_rules! width {
    ($t:ty, $f:ident) => {{
        // SAFETY: every record in records.rs is plain data (integers, floats, raw pointers): all-zero bytes
        // are a valid value.
        let v: $t = unsafe { std::mem::zeroed() };
        let f = v.$f;
        std::mem::size_of_val(&f)
    }};
}

/// Our offset and width of each member, keyed as the published header names it.
macro_rules! ours {
    ($t:ty, $c:literal, [$($f:ident = $m:literal),* $(,)?]) => {
        ($c, size_of::<$t>(), vec![$(($m, offset_of!($t, $f), width!($t, $f))),*])
    };
}

#[test]
fn mspti_records_match_the_published_header() {
    let c = c_layout();
    eprintln!("MSPTI layouts from the {}", c.source);
    let ours = [
        ours!(
            Marker,
            "msptiActivityMarker",
            [
                kind = "kind",
                flag = "flag",
                source_kind = "sourceKind",
                timestamp = "timestamp",
                id = "id",
                object_id = "objectId",
                name = "name",
                domain = "domain"
            ]
        ),
        ours!(
            Api,
            "msptiActivityApi",
            [
                kind = "kind",
                start = "start",
                end = "end",
                process_id = "pt.processId",
                thread_id = "pt.threadId",
                correlation_id = "correlationId",
                name = "name"
            ]
        ),
        ours!(
            Kernel,
            "msptiActivityKernel",
            [
                kind = "kind",
                start = "start",
                end = "end",
                device_id = "ds.deviceId",
                stream_id = "ds.streamId",
                correlation_id = "correlationId",
                type_ = "type",
                name = "name"
            ]
        ),
        ours!(
            Hccl,
            "msptiActivityHccl",
            [
                kind = "kind",
                start = "start",
                end = "end",
                device_id = "ds.deviceId",
                stream_id = "ds.streamId",
                band_width = "bandWidth",
                name = "name",
                comm_name = "commName"
            ]
        ),
        ours!(
            Memory,
            "msptiActivityMemory",
            [
                kind = "kind",
                memory_operation_type = "memoryOperationType",
                memory_kind = "memoryKind",
                correlation_id = "correlationId",
                start = "start",
                end = "end",
                address = "address",
                bytes = "bytes",
                process_id = "processId",
                device_id = "deviceId",
                stream_id = "streamId"
            ]
        ),
        ours!(
            MemOp,
            "msptiActivityMemset",
            [
                kind = "kind",
                value_or_copy_kind = "value",
                bytes = "bytes",
                start = "start",
                end = "end",
                device_id = "deviceId",
                stream_id = "streamId",
                correlation_id = "correlationId",
                is_async = "isAsync"
            ]
        ),
        ours!(
            MemOp,
            "msptiActivityMemcpy",
            [
                kind = "kind",
                value_or_copy_kind = "copyKind",
                bytes = "bytes",
                start = "start",
                end = "end",
                device_id = "deviceId",
                stream_id = "streamId",
                correlation_id = "correlationId",
                is_async = "isAsync"
            ]
        ),
        ours!(
            ExternalCorrelation,
            "msptiActivityExternalCorrelation",
            [
                kind = "kind",
                external_kind = "externalKind",
                external_id = "externalId",
                correlation_id = "correlationId"
            ]
        ),
        ours!(
            Communication,
            "msptiActivityCommunication",
            [
                kind = "kind",
                data_type = "dataType",
                count = "count",
                device_id = "ds.deviceId",
                stream_id = "ds.streamId",
                start = "start",
                end = "end",
                alg_type = "algType",
                name = "name",
                comm_name = "commName",
                correlation_id = "correlationId"
            ]
        ),
    ];
    let mut wrong = vec![];
    let mut checked = 0;
    for (record, size, members) in &ours {
        match c.sizes.get(*record) {
            Some(s) if s == size => {}
            other => wrong.push(format!("{record}: size {size}, published {other:?}")),
        }
        for (m, off, width) in members {
            checked += 1;
            match c.fields.get(&(record.to_string(), m.to_string())) {
                Some(&(o, w)) if (o, w) == (*off, *width) => {}
                other => wrong.push(format!(
                    "{record}.{m}: ours at {off} ({width} bytes), published (offset, width) {other:?}"
                )),
            }
        }
    }
    // Every published member is one we read (a member we do not model would shift nothing only by luck).
    let published = c.fields.len();
    assert_eq!(
        checked,
        published,
        "members compared / published: {:?}",
        c.fields.keys()
    );
    // The stepping table: the record size npuprof steps by for each kind = sizeof the published record.
    for (kind, record) in &c.kinds {
        let want = c.sizes[record];
        if records::record_size(*kind) != Some(want) {
            wrong.push(format!(
                "kind {kind} ({record}): we step {:?}, published {want}",
                records::record_size(*kind)
            ));
        }
    }
    assert_eq!(c.kinds.len(), 12, "{:?}", c.kinds);
    // The kind and result codes by name.
    let codes = [
        ("MSPTI_ACTIVITY_KIND_MARKER", KIND_MARKER),
        ("MSPTI_ACTIVITY_KIND_KERNEL", KIND_KERNEL),
        ("MSPTI_ACTIVITY_KIND_API", KIND_API),
        ("MSPTI_ACTIVITY_KIND_HCCL", KIND_HCCL),
        ("MSPTI_ACTIVITY_KIND_MEMORY", KIND_MEMORY),
        ("MSPTI_ACTIVITY_KIND_MEMSET", KIND_MEMSET),
        ("MSPTI_ACTIVITY_KIND_MEMCPY", KIND_MEMCPY),
        (
            "MSPTI_ACTIVITY_KIND_EXTERNAL_CORRELATION",
            KIND_EXTERNAL_CORRELATION,
        ),
        ("MSPTI_ACTIVITY_KIND_COMMUNICATION", KIND_COMMUNICATION),
        ("MSPTI_ACTIVITY_KIND_ACL_API", KIND_ACL_API),
        ("MSPTI_ACTIVITY_KIND_NODE_API", KIND_NODE_API),
        ("MSPTI_ACTIVITY_KIND_RUNTIME_API", KIND_RUNTIME_API),
        ("MSPTI_SUCCESS", MSPTI_SUCCESS),
        (
            "MSPTI_ERROR_INVALID_PARAMETER",
            MSPTI_ERROR_INVALID_PARAMETER,
        ),
        (
            "MSPTI_ERROR_MULTIPLE_SUBSCRIBERS_NOT_SUPPORTED",
            MSPTI_ERROR_MULTIPLE_SUBSCRIBERS_NOT_SUPPORTED,
        ),
        (
            "MSPTI_ERROR_MAX_LIMIT_REACHED",
            MSPTI_ERROR_MAX_LIMIT_REACHED,
        ),
        ("MSPTI_ERROR_DEVICE_OFFLINE", MSPTI_ERROR_DEVICE_OFFLINE),
        ("MSPTI_ERROR_QUEUE_EMPTY", MSPTI_ERROR_QUEUE_EMPTY),
        (
            "MSPTI_ERROR_WITHOUT_LD_PRELOAD",
            MSPTI_ERROR_WITHOUT_LD_PRELOAD,
        ),
        ("MSPTI_ERROR_INNER", MSPTI_ERROR_INNER),
    ];
    for (name, ours) in codes {
        if c.consts.get(name) != Some(&ours) {
            wrong.push(format!(
                "{name}: ours {ours}, published {:?}",
                c.consts.get(name)
            ));
        }
    }
    assert_eq!(c.consts.len(), codes.len(), "{:?}", c.consts);
    assert!(
        wrong.is_empty(),
        "layouts differ from the {}:\n{}",
        c.source,
        wrong.join("\n")
    );
}

/// The target's C++ compiler, if there is one (a cross build may have only the C compiler).
fn cxx() -> Option<PathBuf> {
    let compiler = cc::Build::new()
        .cargo_metadata(false)
        .cpp(true)
        .target(env!("NPUPROF_BUILD_TARGET"))
        .host(env!("NPUPROF_BUILD_HOST"))
        .opt_level(1)
        .try_get_compiler()
        .ok()?;
    let ok = compiler
        .to_command()
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    ok.then(|| compiler.path().to_path_buf())
}

#[test]
fn feature_records_laid_out_by_a_cpp_compiler_as_the_frameworks_declare_them_decode() {
    let cross = env!("NPUPROF_BUILD_TARGET") != env!("NPUPROF_BUILD_HOST");
    let Some(cxx) = cxx() else {
        assert!(cross, "no C++ compiler for the host");
        eprintln!(
            "note: no C++ compiler for {}: feature record layout not checked",
            env!("NPUPROF_BUILD_TARGET")
        );
        return;
    };
    let dir = target_dir().join("ctests/layouts");
    std::fs::create_dir_all(&dir).unwrap();
    let prog = dir.join("feature_record");
    let o = std::process::Command::new(&cxx)
        .args(["-std=c++14", "-Wall", "-Wextra", "-Werror", "-O1", "-o"])
        .arg(&prog)
        .arg(repo().join("tests/c/layouts/feature_record.cpp"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let tmp = tempfile::tempdir().unwrap();
    let bin = tmp.path().join("records.bin");
    let o = run(&prog, &[bin.to_str().unwrap()], &[]);
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(o.status.success(), "{out}");
    let size: usize = out
        .lines()
        .find_map(|l| l.strip_prefix("size "))
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(Layout::Cpp.size(), size, "{out}");
    let bytes = std::fs::read(&bin).unwrap();
    assert_eq!(bytes.len(), 4 * size);
    let names = features::decode(&bytes, 4, Layout::Cpp);
    assert_eq!(
        names.as_deref(),
        Some(&["ATTR", "MemoryAccess", "AICORE_SHAPE", "TaskTime_V2"].map(String::from)[..]),
        "{out}"
    );
    // The reader tries the C++ layout first and must settle on it for a real C++ array.
    let (layout, names) = features::read(4, bytes.as_ptr().cast()).expect("read");
    assert_eq!(layout, Layout::Cpp);
    assert_eq!(names.len(), 4);
    // And a 256-byte reading of the same bytes is no feature list (the layouts are told apart).
    assert_eq!(features::decode(&bytes, 4, Layout::Plain), None, "{out}");
}

/// `NAME = value` (enum members, a `1 << n` shift included, one-line enums too) and `#define NAME value` of a
/// C file, for the names that begin with `prefix`.
fn c_constants(text: &str, prefix: &str) -> BTreeMap<String, u64> {
    let mut m = BTreeMap::new();
    for item in text.split(['\n', ',', '{', '}', ';']) {
        let l = item.trim().trim_start_matches("#define ");
        let Some(name_end) = l.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) else {
            continue;
        };
        let (name, rest) = l.split_at(name_end);
        if !name.starts_with(prefix) {
            continue;
        }
        let rest = rest.trim().trim_start_matches('=').trim();
        if let Some((a, b)) = rest.split_once("<<") {
            if let (Ok(a), Ok(b)) = (a.trim().parse::<u64>(), b.trim().parse::<u32>()) {
                m.insert(name.to_string(), a << b);
            }
            continue;
        }
        // The value is the first word (a comment may follow).
        let v = rest.split_whitespace().next().unwrap_or("");
        let v = v.trim_end_matches(['U', 'L', 'u', 'l']);
        let n = match v.strip_prefix("0x").or_else(|| v.strip_prefix("0X")) {
            Some(h) => u64::from_str_radix(h, 16).ok(),
            None => v.parse().ok(),
        };
        if let Some(n) = n {
            m.insert(name.to_string(), n);
        }
    }
    m
}

/// The aclprof fake (tests/c/fake_msprofiler.c) declares CANN's enums and data-type bits itself; npuprof
/// takes them from bindgen's output for the real `acl/acl_prof.h` (src/backend/acl/bindings.rs, kept current
/// by `committed_bindings_are_current`). Every value the fake declares must be the real header's.
#[test]
fn the_aclprof_fake_uses_the_real_headers_values() {
    let fake = c_constants(
        &std::fs::read_to_string(repo().join("tests/c/fake_msprofiler.c")).unwrap(),
        "ACL_",
    );
    let mut real = BTreeMap::new();
    for line in std::fs::read_to_string(repo().join("src/backend/acl/bindings.rs"))
        .unwrap()
        .lines()
    {
        let Some(rest) = line.strip_prefix("pub const ") else {
            continue;
        };
        let (Some((name, _)), Some((_, v))) = (rest.split_once(':'), rest.split_once(" = ")) else {
            continue;
        };
        if let Ok(v) = v.trim_end_matches(';').parse::<i64>() {
            real.insert(name.to_string(), v as u64);
        }
    }
    let mut compared = 0;
    let mut wrong = vec![];
    let mut newer = vec![];
    for (name, v) in &fake {
        match real.get(name) {
            Some(r) if r == v => compared += 1,
            Some(r) => wrong.push(format!("{name}: fake {v}, acl_prof.h {r}")),
            None => newer.push(name.as_str()),
        }
    }
    eprintln!("{compared} aclprof constants compared; not in the header the bindings come from: {newer:?}");
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    assert!(compared >= 40, "{compared} compared: {fake:?}");
}

/// The MSPTI fake (tests/c/fake_mspti.c) declares MSPTI's types itself (no MSPTI header is used); its record
/// layouts are held to the published ones by its `_Static_assert`s and `mspti_records_match_the_published_header`.
/// Its enum values and callback ids must be the published header's too: a wrong flag or kind value would make
/// the fake and npuprof agree on something the real library never sends.
#[test]
fn the_mspti_fake_uses_the_published_values() {
    let read = |p: &str| std::fs::read_to_string(repo().join(p)).unwrap();
    let fake = c_constants(&read("tests/c/fake_mspti.c"), "MSPTI_");
    let published = c_constants(&read("tests/c/layouts/mspti_published.h"), "MSPTI_");
    let mut compared = 0;
    let mut wrong = vec![];
    let mut unpublished = vec![];
    for (name, v) in &fake {
        match published.get(name) {
            Some(p) if p == v => compared += 1,
            Some(p) => wrong.push(format!("{name}: fake {v}, published {p}")),
            None => unpublished.push(name.as_str()),
        }
    }
    eprintln!("{compared} MSPTI constants compared");
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    assert!(
        unpublished.is_empty(),
        "the fake declares values the transcription lacks: {unpublished:?}"
    );
    assert!(compared >= 60, "{compared} compared: {fake:?}");
}
