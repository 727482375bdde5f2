//! The shipped example configurations stay valid.

#[test]
fn every_example_in_conf_validates() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("conf");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml") {
            if let Err(e) = portico::snapshot::compile_file(&path) {
                panic!("{e}");
            }
            checked += 1;
        }
    }
    assert!(checked >= 2, "expected the documented and minimal examples");
}

#[test]
fn the_demo_configuration_validates() {
    let text = portico::demo::DEMO_CONFIG
        .replace("{ECHO_1}", "127.0.0.1:1")
        .replace("{ECHO_2}", "127.0.0.1:2");
    portico::snapshot::compile_str("<demo>", &text).unwrap();
}
