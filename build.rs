// Link the cdylib with `-z nodelete`: a `dlclose` by the host must never unmap code that the npuprof-drain
// or npuprof-export thread is still running (the library stays mapped until the process exits).
fn main() {
    println!("cargo:rustc-cdylib-link-arg=-Wl,-z,nodelete");
    println!("cargo:rerun-if-changed=build.rs");
}
