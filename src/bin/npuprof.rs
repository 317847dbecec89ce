//! The `npuprof` command line.
//!
//! ```text
//! npuprof recover DIR...   finish worker directories whose process died without npuprof_stop (kill -9)
//! ```

use std::process::ExitCode;

fn usage() -> ExitCode {
    eprintln!("usage: npuprof recover DIR...\n  DIR: a *_ascend_ms worker directory left by a killed process");
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    match args.first().and_then(|a| a.to_str()) {
        Some("recover") if args.len() > 1 => {
            let mut failed = false;
            for d in &args[1..] {
                let dir = std::path::Path::new(d);
                match npuprof::recover::recover(dir) {
                    Ok(r) => println!(
                        "recovered {}: {} records, {} slices{}",
                        dir.display(),
                        r.records,
                        r.slices,
                        r.torn_frame_at.map_or(String::new(), |o| format!(
                            ", torn last frame at byte {o} skipped"
                        ))
                    ),
                    Err(e) => {
                        eprintln!("npuprof recover: {}: {}", dir.display(), e.msg);
                        failed = true;
                    }
                }
            }
            if failed {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            }
        }
        _ => usage(),
    }
}
