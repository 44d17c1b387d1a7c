//! The wheel pip would take, against trimmed copies of real index documents.

use serde_json::{Value, json};

use super::*;

fn files(list: &[(&str, u64)]) -> Vec<Value> {
    list.iter().map(|(f, s)| json!({ "filename": f, "size": s, "yanked": false })).collect()
}

fn x86(minor: u32) -> Target {
    Target { minor, arch: "x86_64".into(), musl: false }
}

fn chosen(files: &[Value], name: &str, version: &str, target: &Target) -> Option<(String, u64)> {
    choose(files, name, version, target).map(|c| (c.filename, c.size.unwrap()))
}

/// onnxruntime 1.32.0: one wheel per interpreter and platform, free-threaded builds too.
const ONNXRUNTIME: &[(&str, u64)] = &[
    ("onnxruntime-1.32.0-cp311-cp311-macosx_14_0_arm64.whl", 22506162),
    ("onnxruntime-1.32.0-cp311-cp311-manylinux_2_28_aarch64.whl", 23195070),
    ("onnxruntime-1.32.0-cp311-cp311-manylinux_2_28_x86_64.whl", 27773237),
    ("onnxruntime-1.32.0-cp311-cp311-win_amd64.whl", 16695880),
    ("onnxruntime-1.32.0-cp312-cp312-manylinux_2_28_x86_64.whl", 27780211),
    ("onnxruntime-1.32.0-cp313-cp313-manylinux_2_28_x86_64.whl", 27780404),
    ("onnxruntime-1.32.0-cp313-cp313t-manylinux_2_28_x86_64.whl", 27797958),
    ("onnxruntime-1.32.0-cp314-cp314-manylinux_2_28_aarch64.whl", 23197888),
];

#[test]
fn the_wheel_of_this_interpreter_and_platform() {
    let ort = files(ONNXRUNTIME);
    assert_eq!(
        chosen(&ort, "onnxruntime", "1.32.0", &x86(11)),
        Some(("onnxruntime-1.32.0-cp311-cp311-manylinux_2_28_x86_64.whl".into(), 27773237))
    );
    assert_eq!(
        chosen(&ort, "onnxruntime", "1.32.0", &x86(13)).unwrap().0,
        "onnxruntime-1.32.0-cp313-cp313-manylinux_2_28_x86_64.whl",
        "not the free-threaded build"
    );
    let arm = Target { minor: 11, arch: "aarch64".into(), musl: false };
    assert_eq!(
        chosen(&ort, "onnxruntime", "1.32.0", &arm).unwrap().0,
        "onnxruntime-1.32.0-cp311-cp311-manylinux_2_28_aarch64.whl"
    );
    // No wheel for 3.14 on x86_64 here and no sdist: nothing pip could take.
    assert_eq!(choose(&ort, "onnxruntime", "1.32.0", &x86(14)), None);
    assert_eq!(choose(&ort, "onnxruntime", "1.31.0", &x86(11)), None, "another version");
}

#[test]
fn manylinux_or_musllinux_as_the_libc_is() {
    let numpy = files(&[
        ("numpy-2.4.6-cp311-cp311-macosx_14_0_x86_64.whl", 6798936),
        ("numpy-2.4.6-cp311-cp311-manylinux_2_27_x86_64.manylinux_2_28_x86_64.whl", 16918164),
        ("numpy-2.4.6-cp311-cp311-musllinux_1_2_x86_64.whl", 18651487),
        ("numpy-2.4.6-cp311-cp311-win32.whl", 6233945),
        ("numpy-2.4.6-pp311-pypy311_pp73-manylinux_2_27_x86_64.manylinux_2_28_x86_64.whl", 16747286),
        ("numpy-2.4.6.tar.gz", 20735807),
    ]);
    assert_eq!(
        chosen(&numpy, "numpy", "2.4.6", &x86(11)),
        Some(("numpy-2.4.6-cp311-cp311-manylinux_2_27_x86_64.manylinux_2_28_x86_64.whl".into(), 16918164))
    );
    let alpine = Target { musl: true, ..x86(11) };
    assert_eq!(
        chosen(&numpy, "numpy", "2.4.6", &alpine).unwrap().0,
        "numpy-2.4.6-cp311-cp311-musllinux_1_2_x86_64.whl"
    );
    // Python 3.12 has no wheel in this trimmed list: pip would build the sdist.
    let built = choose(&numpy, "numpy", "2.4.6", &x86(12)).unwrap();
    assert_eq!(
        (built.filename.as_str(), built.size, built.sdist),
        ("numpy-2.4.6.tar.gz", Some(20735807), true)
    );
}

#[test]
fn the_stable_abi_before_a_pure_wheel_and_pure_wheels_anywhere() {
    let protobuf = files(&[
        ("protobuf-7.36.2-cp310-abi3-macosx_10_9_universal2.whl", 456039),
        ("protobuf-7.36.2-cp310-abi3-manylinux2014_aarch64.whl", 344219),
        ("protobuf-7.36.2-cp310-abi3-manylinux2014_x86_64.whl", 343223),
        ("protobuf-7.36.2-py3-none-any.whl", 179806),
        ("protobuf-7.36.2.tar.gz", 512737),
    ]);
    assert_eq!(
        chosen(&protobuf, "protobuf", "7.36.2", &x86(11)).unwrap().0,
        "protobuf-7.36.2-cp310-abi3-manylinux2014_x86_64.whl"
    );
    // An abi3 wheel is for its version and newer: not for 3.9. The pure one fits anyway.
    assert_eq!(
        chosen(&protobuf, "protobuf", "7.36.2", &x86(9)).unwrap().0,
        "protobuf-7.36.2-py3-none-any.whl"
    );
    let riscv = Target { arch: "riscv64".into(), ..x86(12) };
    assert_eq!(
        chosen(&protobuf, "protobuf", "7.36.2", &riscv).unwrap().0,
        "protobuf-7.36.2-py3-none-any.whl"
    );
    // A project name spelled with '-' has '_' in its wheels' names.
    let piper = files(&[
        (
            "piper_tts-1.8.0-cp39-abi3-manylinux_2_17_x86_64.manylinux2014_x86_64.manylinux_2_28_x86_64.whl",
            34131442,
        ),
        ("piper_tts-1.8.0-cp39-abi3-win_amd64.whl", 34119688),
        ("piper_tts-1.8.0.tar.gz", 24276117),
    ]);
    assert_eq!(chosen(&piper, "piper-tts", "1.8.0", &x86(12)).unwrap().1, 34131442);
    let flatbuffers = files(&[("flatbuffers-25.12.19-py2.py3-none-any.whl", 26661)]);
    assert_eq!(chosen(&flatbuffers, "flatbuffers", "25.12.19", &x86(13)).unwrap().1, 26661);
}

#[test]
fn an_sdist_when_no_wheel_fits_and_nothing_yanked() {
    let only_source = files(&[("Pure.Thing-0.3.tar.gz", 4000), ("pure_thing-0.3.1.tar.gz", 4100)]);
    let built = choose(&only_source, "pure-thing", "0.3", &x86(11)).unwrap();
    assert_eq!((built.filename.as_str(), built.sdist), ("Pure.Thing-0.3.tar.gz", true));
    let yanked = vec![
        json!({ "filename": "six-1.17.0-py2.py3-none-any.whl", "size": 11050, "yanked": "broken" }),
        json!({ "filename": "six-1.17.0.tar.gz", "size": 34166, "yanked": false }),
    ];
    assert_eq!(chosen(&yanked, "six", "1.17.0", &x86(11)).unwrap().0, "six-1.17.0.tar.gz");
    assert_eq!(choose(&[], "six", "1.17.0", &x86(11)), None);
}

#[test]
fn the_target_of_a_python_version() {
    let here = Target::here("3.12.3").unwrap();
    assert_eq!(here.minor, 12);
    assert!(!here.arch.is_empty());
    assert_eq!(Target::here("2.7.18"), None);
    assert_eq!(Target::here("garbage"), None);
}

#[test]
fn no_index_is_asked_for_a_python_wheels_are_not_tagged_for() {
    let downloader = Downloader::with_index("python3".into(), "http://127.0.0.1:9/simple".into());
    assert!(matches!(cost(&downloader, "six", "1.17.0", None), Cost::Unknown(_)));
    assert_eq!(downloader.received(), 0);
}

#[test]
fn npm_ci_installs_what_fits_this_machine_and_the_cache_holds_some_of_it() {
    let lock = json!({
        "lockfileVersion": 3,
        "packages": {
            "": { "devDependencies": { "vite": "^8" } },
            "node_modules/vite": {
                "integrity": "sha512-AAAA",
                "dependencies": { "bin": "1" },
                "optionalDependencies": { "bin-linux-x64-gnu": "1", "bin-darwin-arm64": "1", "bin-wasm": "1" },
                "peerDependencies": { "sass": "*" }
            },
            "node_modules/vite/node_modules/bin": { "integrity": "sha512-BBBB" },
            "node_modules/bin": { "integrity": "sha512-CCCC" },
            "node_modules/bin-linux-x64-gnu": { "integrity": "sha512-DDDD", "optional": true, "os": ["linux"], "cpu": ["x64"], "libc": ["glibc"] },
            "node_modules/bin-darwin-arm64": { "integrity": "sha512-EEEE", "optional": true, "os": ["darwin"], "cpu": ["arm64"] },
            "node_modules/bin-wasm": { "integrity": "sha512-FFFF", "optional": true, "cpu": ["wasm32"], "dependencies": { "tslib": "2" } },
            "node_modules/tslib": { "integrity": "sha512-GGGG", "optional": true }
        }
    });
    let cache = std::env::temp_dir().join(format!("jarvis-npm-cache-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&cache);
    // "sha512-AAAA" is the bytes 00 00 00: its content sits at content-v2/sha512/00/00/00.
    let content = cache.join("_cacache/content-v2/sha512/00/00");
    std::fs::create_dir_all(&content).unwrap();
    std::fs::write(content.join("00"), "twelve bytes").unwrap();
    assert_eq!(base64("AAAA"), Some(vec![0, 0, 0]));
    assert_eq!(base64("3q2+7w=="), Some(vec![0xde, 0xad, 0xbe, 0xef]));
    assert_eq!(base64("not base64!"), None);
    // vite, its own nested bin (not the top one), the linux binding; not the other
    // platforms' bindings, nor tslib, which only a skipped one needs.
    let here = npm_cache(&lock, &cache, "linux", "x64", "glibc").unwrap();
    assert_eq!(here, NpmCache { packages: 3, cached: 1, cached_bytes: 12 });
    let mac = npm_cache(&lock, &cache, "darwin", "arm64", "glibc").unwrap();
    assert_eq!(mac.packages, 3);
    assert_eq!(npm_cache(&json!({ "lockfileVersion": 1 }), &cache, "linux", "x64", "glibc"), None);
    std::fs::remove_dir_all(&cache).unwrap();
}
