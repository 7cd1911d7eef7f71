//! Running pods through `appcctl run` with the static probe as the app: the environment the
//! spec promises (X1–X6, OS-SPEC.md, F7, V1–V11, G1–G3), every run flag, exit codes, event
//! handlers and the ACE-like two-app pod of appc-requirements.md §5.1 (without metadata).

mod common;
mod pod;
mod probe;

use pod::{Env, can_run_pods, cap_names, mount_at};
use serde_json::{Value, json};

/// The spec's default bounding set (ace.md, 14 capabilities).
const DEFAULT_CAPS: [&str; 14] = [
    "CAP_AUDIT_WRITE",
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_MKNOD",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_RAW",
    "CAP_SETFCAP",
    "CAP_SETGID",
    "CAP_SETPCAP",
    "CAP_SETUID",
    "CAP_SYS_CHROOT",
];

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

#[test]
fn x1_environment_os_spec_filesystem_and_namespaces() {
    if !can_run_pods() {
        return;
    }
    let env = Env::new();
    let image = env.probe_image("basic", &["report"], |_| {});
    let run = env.appcctl(&["run", "--name", "basic-pod", &image]);
    let r = run.ok().report();
    // X1
    assert_eq!(
        r["env"]["PATH"],
        "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    );
    assert_eq!(r["env"]["AC_APP_NAME"], "basic");
    assert!(
        r["env"]["AC_METADATA_URL"]
            .as_str()
            .is_some_and(|u| u.starts_with("http"))
    );
    assert_eq!(r["env"]["container"], "appc-pod");
    // X4, X5
    assert_eq!(r["cwd"], "/");
    assert_eq!((r["uid"].as_u64(), r["gid"].as_u64()), (Some(0), Some(0)));
    // The init is PID 1, the app its child; the hostname defaults to the pod's name.
    assert_eq!((r["pid"].as_u64(), r["ppid"].as_u64()), (Some(2), Some(1)));
    assert_eq!(r["hostname"], "basic-pod");
    // Default capabilities, seccomp on (default filter), no_new_privs off.
    assert_eq!(
        sorted(cap_names(&r, "bounding")),
        DEFAULT_CAPS.map(String::from).to_vec()
    );
    assert_eq!(cap_names(&r, "inheritable"), Vec::<String>::new());
    assert_eq!(r["seccomp"], 2);
    assert_eq!(r["no_new_privs"], 0);
    // OS-SPEC.md: /proc, /sys read-only, /dev with its nodes, devpts, /dev/shm.
    let fstype = |p: &str| mount_at(&r, p).map(|m| m["fstype"].clone());
    assert_eq!(fstype("/"), Some(json!("overlay")));
    assert_eq!(fstype("/proc"), Some(json!("proc")));
    assert_eq!(
        mount_at(&r, "/sys").map(|m| m["ro"].clone()),
        Some(json!(true))
    );
    assert_eq!(fstype("/dev"), Some(json!("tmpfs")));
    assert_eq!(fstype("/dev/pts"), Some(json!("devpts")));
    assert_eq!(fstype("/dev/shm"), Some(json!("tmpfs")));
    for (dev, major, minor) in [
        ("null", 1, 3),
        ("zero", 1, 5),
        ("full", 1, 7),
        ("random", 1, 8),
        ("urandom", 1, 9),
        ("tty", 5, 0),
    ] {
        let d = &r["devices"][dev];
        assert_eq!(
            (d["type"].as_str(), d["major"].as_u64(), d["minor"].as_u64()),
            (Some("char"), Some(major), Some(minor)),
            "/dev/{dev}: {d}"
        );
    }
    assert_eq!(r["devices"]["console"]["exists"], true, "{}", r["devices"]);
    assert_eq!(r["devices"]["ptmx"]["exists"], true, "{}", r["devices"]);
    // P1: new PID, mount, UTS, IPC and net namespaces.
    for ns in ["pid", "mnt", "uts", "ipc", "net"] {
        let host = std::fs::read_link(format!("/proc/self/ns/{ns}")).unwrap();
        assert_ne!(
            r["namespaces"][ns],
            host.to_string_lossy().as_ref(),
            "{ns} namespace shared with the host"
        );
    }
    // Only stdio reaches the app.
    let fds: Vec<u64> = r["fds"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|f| f["fd"].as_u64())
        .collect();
    assert_eq!(fds, [0, 1, 2], "{}", r["fds"]);
    // /etc/hosts was created with a localhost entry (the image has none).
    let hosts =
        std::fs::read_to_string(env.pod_dir("basic-pod").join("apps/basic/upper/etc/hosts"))
            .unwrap();
    assert!(hosts.starts_with("127.0.0.1\tlocalhost"), "{hosts}");
}

#[test]
fn exit_code_of_the_first_failing_app_and_the_others_are_stopped() {
    if !can_run_pods() {
        return;
    }
    let env = Env::new();
    let image = env.probe_image("ex", &["exit", "0"], |_| {});
    let run = env.appcctl(&["run", "--name", "one", &image, "--", "exit", "7"]);
    assert_eq!(run.code, Some(7), "{}", run.stderr);
    // Two apps: the failing one stops the sleeper, whose SIGTERM status is recorded.
    let run = env.appcctl(&[
        "run", "--name", "two", &image, "--name", "quick", "--", "exit", "4", "---", &image,
        "--name", "sleeper", "--", "sleep", "inf",
    ]);
    assert_eq!(run.code, Some(4), "{}", run.stderr);
    let st = env.status("two");
    assert_eq!(st["state"], "exited", "{st}");
    let codes = st.to_string();
    assert!(
        codes.contains("143"),
        "sleeper was not stopped by SIGTERM: {codes}"
    );
    // All succeed: 0.
    let run = env.appcctl(&["run", &image, "---", &image, "--name", "b"]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
}

#[test]
fn x5_user_group_flags_cwd_environment_and_readonly_rootfs() {
    if !can_run_pods() {
        return;
    }
    let env = Env::new();
    let image = env.probe_image("flags", &["report"], |m| {
        m["app"]["environment"] = json!([{"name": "FROM_IMAGE", "value": "image"}, {"name": "OVER", "value": "image"}]);
    });
    let run = env.appcctl(&[
        "run",
        "--set-env",
        "OVER=pod",
        "--set-env",
        "POD=yes",
        &image,
        "--user",
        "nobody",
        "--group",
        "65534",
        "--supplementary-gids",
        "5,6",
        "--working-dir",
        "/tmp",
        "--environment",
        "APP=1",
        "--readonly-rootfs",
    ]);
    let r = run.ok().report();
    assert_eq!(
        (r["uid"].as_u64(), r["gid"].as_u64()),
        (Some(65534), Some(65534))
    );
    assert_eq!(r["groups"], json!([5, 6]));
    assert_eq!(r["cwd"], "/tmp");
    assert_eq!(r["env"]["FROM_IMAGE"], "image");
    assert_eq!(r["env"]["OVER"], "pod");
    assert_eq!(r["env"]["POD"], "yes");
    assert_eq!(r["env"]["APP"], "1");
    assert_eq!(
        mount_at(&r, "/").map(|m| m["ro"].clone()),
        Some(json!(true))
    );
    // A non-root user keeps no capabilities (the bounding set is still the default one).
    assert_eq!(cap_names(&r, "effective"), Vec::<String>::new());
    // The owner of a path (X5 rule 3) and a missing working directory.
    let run = env.appcctl(&["run", &image, "--user", "/tmp", "--group", "/probe"]);
    assert_eq!(run.ok().report()["uid"], 0);
    let run = env.appcctl(&["run", &image, "--working-dir", "/nonexistent"]);
    assert_eq!(run.code, Some(254));
    assert!(
        run.stderr
            .contains("working directory /nonexistent does not exist"),
        "{}",
        run.stderr
    );
    let run = env.appcctl(&["run", &image, "--user", "nosuchuser"]);
    assert_eq!(run.code, Some(254));
    assert!(run.stderr.contains("nosuchuser"), "{}", run.stderr);
}

#[test]
fn isolators_capabilities_seccomp_nnp_oom_memory_cpu() {
    if !can_run_pods() {
        return;
    }
    let env = Env::new();
    let image = env.probe_image("iso", &["report"], |m| {
        m["app"]["isolators"] = json!([{"name": "os/linux/no-new-privileges", "value": true}]);
    });
    let run = env.appcctl(&[
        "--debug",
        "run",
        "--name",
        "iso-pod",
        &image,
        "--caps-retain",
        "CAP_NET_BIND_SERVICE,CAP_KILL",
        "--memory",
        "64Mi",
        "--cpu",
        "500m",
        "--oom-score-adj",
        "300",
    ]);
    let r = run.ok().report();
    assert_eq!(
        sorted(cap_names(&r, "bounding")),
        ["CAP_KILL", "CAP_NET_BIND_SERVICE"]
    );
    assert_eq!(r["no_new_privs"], 1);
    assert_eq!(r["oom_score_adj"], 300);
    assert_eq!(r["limits"]["memory"]["bytes"], 64 << 20, "{}", r["limits"]);
    assert_eq!(r["limits"]["cpu"]["quota_us"], 50_000, "{}", r["limits"]);
    // G3: --debug and status say what was enforced.
    assert!(
        run.stderr.contains("resource/memory: enforced"),
        "{}",
        run.stderr
    );
    let st = env.status("iso-pod").to_string();
    assert!(st.contains("os/linux/capabilities-retain-set"), "{st}");
    // remove-set of capabilities and a seccomp remove-set with errno.
    let image2 = env.probe_image("sc", &["syscall", "uname"], |_| {});
    let run = env.appcctl(&[
        "run",
        &image2,
        "--seccomp",
        "mode=remove,errno=EACCES,uname",
    ]);
    let out = run.report();
    assert_eq!(
        (out["ok"].as_bool(), out["errno"].as_i64()),
        (Some(false), Some(13)),
        "{out}"
    );
    let run = env.appcctl(&["run", &image2, "--", "syscall", "getpid"]);
    assert_eq!(run.ok().report()["ok"], true);
    let run = env.appcctl(&["run", &image, "--caps-remove", "CAP_CHOWN,CAP_KILL"]);
    let caps = cap_names(&run.ok().report(), "bounding");
    assert_eq!(caps.len(), 12, "{caps:?}");
    assert!(!caps.contains(&"CAP_CHOWN".to_owned()));
}

#[test]
fn memory_limit_is_enforced_by_the_oom_killer() {
    if !can_run_pods() {
        return;
    }
    let env = Env::new();
    let image = env.probe_image("alloc", &["alloc", "128"], |_| {});
    let run = env.appcctl(&["run", &image, "--memory", "32M"]);
    assert_eq!(
        run.code,
        Some(137),
        "stdout {} stderr {}",
        run.stdout,
        run.stderr
    );
    let run = env.appcctl(&["run", &image, "--memory", "256M"]);
    assert!(run.ok().stdout.contains("allocated 128"));
}

#[test]
fn volumes_host_empty_readonly_and_implicit() {
    if !can_run_pods() {
        return;
    }
    let env = Env::new();
    let host = env.tmp.path().join("hostdir");
    std::fs::create_dir(&host).unwrap();
    std::fs::write(host.join("data.txt"), "from the host").unwrap();
    let image = env.probe_image("vol", &["report"], |m| {
        m["app"]["mountPoints"] = json!([{"name": "scratch", "path": "/scratch"}]);
    });
    let volume = format!("hostvol,kind=host,source={},readOnly=true", host.display());
    let run = env.appcctl(&[
        "run",
        "--volume",
        &volume,
        "--mount",
        "volume=hostvol,target=/host",
        &image,
        "--",
        "read",
        "/host/data.txt",
    ]);
    assert_eq!(run.ok().report()["content"], "from the host");
    // V1 read-only: writing through the volume fails; the implicit empty volume warns.
    let run = env.appcctl(&[
        "run",
        "--volume",
        &volume,
        "--mount",
        "volume=hostvol,target=/host",
        &image,
        "--",
        "try-open-write",
        "/host/data.txt",
    ]);
    assert_eq!(run.report()["ok"], false, "{}", run.stdout);
    assert!(
        run.stderr.contains("scratch"),
        "no warning about the implicit volume: {}",
        run.stderr
    );
    // An empty volume with mode/uid/gid is shared and persists in the pod dir.
    let run = env.appcctl(&[
        "run",
        "--name",
        "emp",
        "--volume",
        "scratch,kind=empty,mode=0750,uid=65534,gid=65534",
        &image,
        "--",
        "write",
        "/scratch/out",
        "hello",
    ]);
    run.ok();
    let dir = env.pod_dir("emp").join("volumes/scratch");
    assert_eq!(std::fs::read_to_string(dir.join("out")).unwrap(), "hello");
    let md = std::fs::metadata(&dir).unwrap();
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    assert_eq!(
        (md.permissions().mode() & 0o7777, md.uid(), md.gid()),
        (0o750, 65534, 65534)
    );
    // V9: a missing host source is an error naming the volume; nothing runs.
    let run = env.appcctl(&[
        "run",
        "--volume",
        "gone,kind=host,source=/nonexistent/x",
        "--mount",
        "volume=gone,target=/x",
        &image,
    ]);
    assert_eq!(run.code, Some(254));
    assert!(
        run.stderr.contains("gone") && run.stderr.contains("/nonexistent/x"),
        "{}",
        run.stderr
    );
}

/// appc-requirements.md §5.1 without the metadata part: main + sidekick share an `empty`
/// volume; pre-start runs before main, post-stop after it, both with the app's environment.
#[test]
fn ace_like_two_apps_with_event_handlers() {
    if !can_run_pods() {
        return;
    }
    let env = Env::new();
    let handlers = |m: &mut Value| {
        m["app"]["mountPoints"] = json!([{"name": "database", "path": "/db"}]);
        m["app"]["eventHandlers"] = json!([
            {"name": "pre-start", "exec": ["/probe", "write", "/db/prestart", "pre"]},
            {"name": "post-stop", "exec": ["/probe", "report", "--out", "/db/poststop.json"]},
        ]);
    };
    let main = env.probe_image("ace-main", &["read", "/db/prestart"], handlers);
    let side = env.probe_image("ace-sidekick", &["write", "/db/sidekick", "side"], |m| {
        m["app"]["mountPoints"] = json!([{"name": "database", "path": "/db"}]);
    });
    let run = env.appcctl(&[
        "run",
        "--name",
        "ace",
        "--volume",
        "database,kind=empty",
        &main,
        "--name",
        "ace-validator-main",
        "---",
        &side,
        "--name",
        "ace-validator-sidekick",
    ]);
    let r = run.ok().report_with("content");
    assert_eq!(r["content"], "pre", "main did not see the pre-start marker");
    let db = env.pod_dir("ace").join("volumes/database");
    assert_eq!(
        std::fs::read_to_string(db.join("sidekick")).unwrap(),
        "side"
    );
    let post: Value =
        serde_json::from_str(&std::fs::read_to_string(db.join("poststop.json")).unwrap()).unwrap();
    // X1 applies to event handlers too.
    assert_eq!(post["env"]["AC_APP_NAME"], "ace-validator-main");
    assert_eq!(post["env"]["container"], "appc-pod");
    // A failing pre-start handler fails the pod with its status; the app never runs.
    let bad = env.probe_image("badpre", &["write", "/tmp/ran", "x"], |m| {
        m["app"]["eventHandlers"] = json!([{"name": "pre-start", "exec": ["/probe", "exit", "9"]}]);
    });
    let run = env.appcctl(&["run", &bad]);
    assert_eq!(run.code, Some(9), "{}", run.stderr);
    assert!(run.stderr.contains("pre-start"), "{}", run.stderr);
}

#[test]
fn f7_every_run_starts_from_a_clean_root_and_no_overlay_copies() {
    if !can_run_pods() {
        return;
    }
    let env = Env::new();
    let image = env.probe_image("clean", &["exists", "/marker"], |_| {});
    let run = env.appcctl(&["run", &image]);
    assert_eq!(
        run.code,
        Some(1),
        "marker present in a fresh root: {}",
        run.stdout
    );
    let run = env.appcctl(&["run", "--name", "w", &image, "--", "write", "/marker", "x"]);
    run.ok();
    let run = env.appcctl(&["run", &image]);
    assert_eq!(
        run.code,
        Some(1),
        "a write leaked into the image: {}",
        run.stdout
    );
    let image2 = env.probe_image("copy", &["report"], |_| {});
    let run = env.appcctl(&["run", "--no-overlay", &image2]);
    let r = run.ok().report();
    assert_ne!(
        mount_at(&r, "/").map(|m| m["fstype"].clone()),
        Some(json!("overlay"))
    );
}

#[test]
fn n1_loopback_is_up_hostname_flag_and_host_network() {
    if !can_run_pods() {
        return;
    }
    let env = Env::new();
    let image = env.probe_image("net", &["read", "/sys/class/net/lo/flags"], |_| {});
    let run = env.appcctl(&["run", "--hostname", "web-1", &image]);
    // IFF_UP (0x1) set on the pod's own loopback.
    let flags = run.ok().report()["content"]
        .as_str()
        .unwrap()
        .trim()
        .to_owned();
    let flags = u32::from_str_radix(flags.trim_start_matches("0x"), 16).unwrap();
    assert_eq!(flags & 1, 1, "lo is down: {flags:#x}");
    let image2 = env.probe_image("netns", &["report"], |_| {});
    let run = env.appcctl(&["run", "--hostname", "web-1", &image2]);
    assert_eq!(run.ok().report()["hostname"], "web-1");
    // --net=host keeps the host's network namespace and only that one.
    let run = env.appcctl(&["run", "--net", "host", &image2]);
    let r = run.ok().report();
    let host_net = std::fs::read_link("/proc/self/ns/net").unwrap();
    assert_eq!(r["namespaces"]["net"], host_net.to_string_lossy().as_ref());
    let host_uts = std::fs::read_link("/proc/self/ns/uts").unwrap();
    assert_ne!(r["namespaces"]["uts"], host_uts.to_string_lossy().as_ref());
}

/// G1: pod-level resource isolators bound the apps' (the pod cgroup carries them, and an
/// app's effective limit is the smaller one); cpu-shares reaches the app cgroup.
#[test]
fn g1_pod_isolators_bound_app_isolators() {
    if !can_run_pods() {
        return;
    }
    let env = Env::new();
    let image = env.probe_image("bound", &["report"], |m| {
        m["app"]["isolators"] = json!([{"name": "resource/memory", "value": {"limit": "512Mi"}}]);
    });
    let id = env.appcctl(&["image", "list", "--format", "json"]);
    let images: Value = serde_json::from_str(&id.stdout).unwrap();
    let image_id = images.as_array().unwrap()[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let manifest = json!({
        "acKind": "PodManifest", "acVersion": "0.8.11",
        "apps": [{"name": "bound", "image": {"name": image, "id": image_id}}],
        "isolators": [{"name": "resource/memory", "value": {"limit": "96Mi"}}],
    });
    let path = env.tmp.path().join("pod.json");
    std::fs::write(&path, manifest.to_string()).unwrap();
    let run = env.appcctl(&["--debug", "run", "--pod-manifest", path.to_str().unwrap()]);
    let r = run.ok().report();
    assert_eq!(
        r["limits"]["memory"]["effective_bytes"],
        96 << 20,
        "{}",
        r["limits"]
    );
    assert!(
        run.stderr.contains("resource/memory: changed"),
        "{}",
        run.stderr
    );
    let run = env.appcctl(&["run", &image, "--cpu-shares", "512"]);
    assert_eq!(run.ok().report()["limits"]["cpu"]["shares"], 512);
}

/// The store keeps what live pods stand on: `image rm` refuses and `image gc` skips the images
/// (and their dependencies) of prepared and running pods.
#[test]
fn images_of_live_pods_are_kept() {
    if !can_run_pods() {
        return;
    }
    let env = Env::new();
    let image = env.probe_image("kept", &["exit", "0"], |_| {});
    env.appcctl(&["prepare", "--name", "holder", &image]).ok();
    let run = env.appcctl(&["image", "rm", &image]);
    assert_eq!(run.code, Some(254));
    assert!(run.stderr.contains("used by pod holder"), "{}", run.stderr);
    env.appcctl(&["image", "gc", "--grace-period", "0s"]).ok();
    env.appcctl(&["run-prepared", "holder"]).ok();
    // Exited now: the image is free to go.
    env.appcctl(&["image", "rm", &image]).ok();
}

/// A read-only recursive host volume is read-only all the way down, submounts included.
#[test]
fn read_only_recursive_volume_covers_submounts() {
    if !can_run_pods() {
        return;
    }
    let env = Env::new();
    let host = env.tmp.path().join("withsub");
    std::fs::create_dir_all(host.join("sub")).unwrap();
    let sub = host.join("sub");
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "tmpfs"])
        .arg(&sub)
        .status()
        .unwrap();
    assert!(mounted.success());
    std::fs::write(sub.join("f"), "x").unwrap();
    let image = env.probe_image("rosub", &["try-open-write", "/v/sub/f"], |_| {});
    let volume = format!("v,kind=host,source={},readOnly=true", host.display());
    let run = env.appcctl(&[
        "run",
        "--volume",
        &volume,
        "--mount",
        "volume=v,target=/v",
        &image,
    ]);
    let _ = std::process::Command::new("umount").arg(&sub).status();
    assert_eq!(run.report()["ok"], false, "{} {}", run.stdout, run.stderr);
    assert_eq!(run.report()["errno"], 30, "expected EROFS: {}", run.stdout);
}
