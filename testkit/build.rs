// `sqlx::migrate!` embeds migrations/ at compile time; rebuild when a file
// there changes or appears, so the template name follows the migrations.
fn main() {
    println!("cargo:rerun-if-changed=../migrations");
}
