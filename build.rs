// Link the cdylib with `-z nodelete`: a `dlclose` by the host must never unmap code that the npuprof-drain
// or npuprof-export thread is still running (the library stays mapped until the process exits).
fn main() {
    println!("cargo:rustc-cdylib-link-arg=-Wl,-z,nodelete");
    // Tests build C clients with the `cc` crate for the same target.
    if let Ok(t) = std::env::var("TARGET") {
        println!("cargo:rustc-env=NPUPROF_BUILD_TARGET={t}");
    }
    println!("cargo:rerun-if-changed=build.rs");
}
