// Link the cdylib with `-z nodelete`: a `dlclose` by the host must never unmap code that the npuprof-drain
// or npuprof-export thread is still running (the library stays mapped until the process exits).
fn main() {
    println!("cargo:rustc-cdylib-link-arg=-Wl,-z,nodelete");
    // Tests build C clients with the `cc` crate for the same target.
    for (var, name) in [
        ("TARGET", "NPUPROF_BUILD_TARGET"),
        ("HOST", "NPUPROF_BUILD_HOST"),
    ] {
        if let Ok(v) = std::env::var(var) {
            println!("cargo:rustc-env={name}={v}");
        }
    }
    println!("cargo:rerun-if-changed=build.rs");
}
