//! Pod networking (`src/net`): `--net=default|none|host`, `--port`, `--dns*`, `--hosts-entry`,
//! addresses in `status`/`list`, and cleanup after stop, rm, and `kill -9` of the runner + gc.
//!
//! Nothing here touches the machine's network: each test makes a network namespace of its own
//! (a sleeping holder started by `unshare --net`, "the test host") and runs every `appcctl`
//! and every check in it through `nsenter --net`, with a private IPAM state dir
//! (`APPC_NET_DIR`) and config dir. The bridge, the veths, `ip_forward` and the nftables table
//! all live and die with that namespace; no traffic leaves it.
//!
//! Apps are busybox-static shells (`ip`, `ping`, `nc`, `httpd`), root, in a plain image.

mod common;
mod pod;
mod probe;

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use pod::{Env, Run, can_run_pods};
use serde_json::{Value, json};

const DEADLINE: Duration = Duration::from_secs(60);

/// A network namespace held by `sleep`, with loopback up; removed with the holder on drop.
struct NetNs {
    holder: Child,
    state: tempfile::TempDir,
    config: tempfile::TempDir,
}

impl NetNs {
    fn new() -> NetNs {
        let holder = Command::new("unshare")
            .args([
                "--net",
                "sh",
                "-c",
                "ip link set lo up && exec sleep 100000",
            ])
            .stdin(Stdio::null())
            .spawn()
            .expect("unshare --net (util-linux)");
        let ns = NetNs {
            holder,
            state: tempfile::tempdir().expect("tempdir"),
            config: tempfile::tempdir().expect("tempdir"),
        };
        let ours = fs::read_link("/proc/self/ns/net").expect("our netns");
        wait_until("the test namespace", || {
            fs::read_link(ns.path()).is_ok_and(|l| l != ours)
                && ns.sh("ip -o link show lo").stdout.contains("UP")
        });
        ns
    }

    fn path(&self) -> PathBuf {
        PathBuf::from(format!("/proc/{}/ns/net", self.holder.id()))
    }

    /// `program args` inside the namespace.
    fn cmd(&self, program: &Path, args: &[&str]) -> Command {
        let mut c = Command::new("nsenter");
        c.arg(format!("--net={}", self.path().display()))
            .arg(program)
            .args(args)
            .stdin(Stdio::null());
        c
    }

    fn sh(&self, script: &str) -> Run {
        self.cmd(Path::new("/bin/sh"), &["-c", script])
            .output()
            .expect("nsenter")
            .into()
    }

    /// `appcctl --dir <env> --config-dir <ours> ARGS` inside the namespace, with our IPAM dir.
    fn appcctl_cmd(&self, env: &Env, args: &[&str]) -> Command {
        let dir = env.dir();
        let config = self.config.path().to_str().expect("utf-8").to_owned();
        let mut all = vec![
            "--dir",
            dir.to_str().expect("utf-8"),
            "--config-dir",
            &config,
        ];
        all.extend_from_slice(args);
        let mut c = self.cmd(Path::new(env!("CARGO_BIN_EXE_appcctl")), &all);
        c.env("APPC_NET_DIR", self.state.path());
        c
    }

    fn appcctl(&self, env: &Env, args: &[&str]) -> Run {
        self.appcctl_cmd(env, args)
            .output()
            .expect("appcctl")
            .into()
    }

    /// `appcctl ARGS` in the background, output in files under the env's temp dir.
    fn spawn(&self, env: &Env, tag: &str, args: &[&str]) -> Child {
        let out = fs::File::create(env.tmp.path().join(format!("{tag}.out"))).expect("out");
        let err = fs::File::create(env.tmp.path().join(format!("{tag}.err"))).expect("err");
        self.appcctl_cmd(env, args)
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("spawn appcctl")
    }

    /// The IPAM lease files left in the state dir.
    fn leases(&self) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for net in fs::read_dir(self.state.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            for f in fs::read_dir(net.path()).into_iter().flatten().flatten() {
                let name = f.file_name().to_string_lossy().into_owned();
                if name.ends_with(".json") && !name.starts_with('.') {
                    out.push(f.path());
                }
            }
        }
        out
    }

    /// Pod veths (`appc` + 11 hex digits) in the namespace.
    fn pod_veths(&self) -> Vec<String> {
        self.sh("ip -o link show")
            .stdout
            .lines()
            .filter_map(|l| l.split(": ").nth(1))
            .map(|n| n.split('@').next().unwrap_or(n).to_owned())
            .filter(|n| n.len() == 15 && n.starts_with("appc"))
            .collect()
    }

    /// The pod rules (by comment) and pod chains (by name) in `inet appc`.
    fn pod_rules(&self) -> Vec<String> {
        let r = self.sh("nft -j list table inet appc 2>/dev/null || true");
        let Ok(v) = serde_json::from_str::<Value>(&r.stdout) else {
            return Vec::new();
        };
        let items = v["nftables"].as_array().cloned().unwrap_or_default();
        let rules = items
            .iter()
            .filter_map(|i| i["rule"]["comment"].as_str())
            .filter(|c| c.starts_with("appc-pod:"));
        let chains = items
            .iter()
            .filter_map(|i| i["chain"]["name"].as_str())
            .filter(|n| n.starts_with("pod-"));
        rules.chain(chains).map(str::to_owned).collect()
    }

    fn assert_clean(&self, when: &str) {
        assert_eq!(self.pod_veths(), Vec::<String>::new(), "veths {when}");
        assert_eq!(self.leases(), Vec::<PathBuf>::new(), "leases {when}");
        assert_eq!(self.pod_rules(), Vec::<String>::new(), "nft rules {when}");
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = self.holder.kill();
        let _ = self.holder.wait();
    }
}

fn wait_until(what: &str, mut ok: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ok() {
        assert!(start.elapsed() < DEADLINE, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Whether networking tests can run here: root, `unshare`, `nsenter`, `nft` and busybox.
fn can_run() -> bool {
    if !can_run_pods() {
        return false;
    }
    for tool in ["unshare", "nsenter", "nft"] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .is_ok_and(|o| o.status.success());
        if !found {
            common::skip(&format!("{tool} is not installed (nftables, util-linux)"));
            return false;
        }
    }
    if !Path::new("/bin/busybox").is_file() {
        common::skip("/bin/busybox is missing (busybox-static)");
        return false;
    }
    true
}

/// A busybox image `example.com/<name>` running `sh -c SCRIPT`, declaring port `www` (tcp 80),
/// serving `/www/index.html` = `hello from <name>`.
fn busybox_image(env: &Env, name: &str, script: &str) -> String {
    busybox_image_with(env, name, script, &[])
}

/// [`busybox_image`] with extra rootfs files (path, content).
fn busybox_image_with(env: &Env, name: &str, script: &str, files: &[(&str, &str)]) -> String {
    let layout = env.tmp.path().join(name);
    let rootfs = layout.join("rootfs");
    for d in ["bin", "etc", "www", "tmp"] {
        fs::create_dir_all(rootfs.join(d)).expect("mkdir");
    }
    fs::copy("/bin/busybox", rootfs.join("bin/busybox")).expect("copy busybox");
    let applets = [
        "sh", "ip", "ping", "nc", "httpd", "cat", "echo", "sleep", "hostname", "grep",
    ];
    for applet in applets {
        symlink("busybox", rootfs.join("bin").join(applet)).expect("applet link");
    }
    fs::write(rootfs.join("etc/passwd"), "root:x:0:0:root:/:/bin/sh\n").expect("passwd");
    fs::write(rootfs.join("etc/group"), "root:x:0:\n").expect("group");
    fs::write(
        rootfs.join("www/index.html"),
        format!("hello from {name}\n"),
    )
    .expect("index");
    for (path, content) in files {
        fs::write(rootfs.join(path), content).expect("extra file");
    }
    let (os, arch) = appc_pod::schema::host_os_arch();
    let manifest = json!({
        "acKind": "ImageManifest",
        "acVersion": "0.8.11",
        "name": format!("example.com/{name}"),
        "labels": [{"name": "os", "value": os}, {"name": "arch", "value": arch}],
        "app": {
            "exec": ["/bin/sh", "-c", script],
            "user": "0",
            "group": "0",
            "ports": [{"name": "www", "protocol": "tcp", "port": 80}],
        },
    });
    fs::write(layout.join("manifest"), manifest.to_string()).expect("manifest");
    env.import(&layout, name);
    format!("example.com/{name}")
}

/// `status --format json NAME` in the namespace.
fn status(ns: &NetNs, env: &Env, name: &str) -> Value {
    let r = ns.appcctl(env, &["status", "--format", "json", name]);
    serde_json::from_str(&r.stdout).unwrap_or(Value::Null)
}

/// Waits until pod `name` runs and reports an address; returns it.
fn running_ip(ns: &NetNs, env: &Env, name: &str) -> String {
    let mut ip = String::new();
    wait_until(&format!("pod {name} to run with an address"), || {
        let s = status(ns, env, name);
        if let (Some("running"), Some(a)) = (s["state"].as_str(), s["networks"][0]["ip"].as_str()) {
            ip = a.to_owned();
            return true;
        }
        false
    });
    ip
}

/// An HTTP GET through busybox nc, from the test namespace.
fn http_get(ns: &NetNs, addr: &str, port: u16) -> String {
    ns.sh(&format!(
        "printf 'GET / HTTP/1.0\\r\\n\\r\\n' | busybox nc -w 5 {addr} {port}"
    ))
    .stdout
}

fn in_subnet(ip: &str) -> bool {
    ip.starts_with("172.16.28.") && ip != "172.16.28.1"
}

#[test]
fn default_network_gives_an_address_a_route_and_the_gateway_and_dns_files() {
    if !can_run() {
        return;
    }
    let env = Env::new();
    let ns = NetNs::new();
    let image = busybox_image(
        &env,
        "netinfo",
        "ip -4 -o addr show dev eth0; ip route; ip -o link show lo; \
         ping -c 1 -W 5 172.16.28.1 >/dev/null && echo GATEWAY-OK; \
         echo ---resolv; cat /etc/resolv.conf; echo ---hosts; cat /etc/hosts; hostname",
    );
    let r = ns.appcctl(
        &env,
        &[
            "run",
            "--name",
            "info",
            "--hostname",
            "web1",
            "--dns",
            "10.0.0.53",
            "--dns-search",
            "example.com",
            "--dns-opt",
            "ndots:2",
            "--hosts-entry",
            "10.1.2.3=db.example.com",
            &image,
        ],
    );
    r.ok();
    let out = &r.stdout;
    let ip = out
        .split_whitespace()
        .skip_while(|w| *w != "inet")
        .nth(1)
        .and_then(|a| a.split('/').next())
        .unwrap_or_else(|| panic!("no inet address on eth0:\n{out}"))
        .to_owned();
    assert!(
        in_subnet(&ip),
        "{ip} is not a pod address of 172.16.28.0/24:\n{out}"
    );
    assert!(out.contains(&format!("inet {ip}/24")), "{out}");
    assert!(out.contains("default via 172.16.28.1 dev eth0"), "{out}");
    assert!(
        out.lines().any(|l| l.contains(": lo:") && l.contains("UP")),
        "{out}"
    );
    assert!(
        out.contains("GATEWAY-OK"),
        "the gateway did not answer:\n{out}\n{}",
        r.stderr
    );
    assert!(
        out.contains("nameserver 10.0.0.53\nsearch example.com\noptions ndots:2\n"),
        "{out}"
    );
    assert!(out.contains(&format!("{ip}\tweb1\n")), "{out}");
    assert!(out.contains("10.1.2.3\tdb.example.com\n"), "{out}");
    assert!(out.contains("127.0.0.1\tlocalhost\n"), "{out}");
    assert!(out.trim_end().ends_with("web1"), "{out}");

    // The address stays in the pod's status and list; the network is released.
    let s = status(&ns, &env, "info");
    assert_eq!(s["networks"][0]["ip"], ip.as_str(), "{s:#}");
    assert_eq!(s["networks"][0]["gateway"], "172.16.28.1", "{s:#}");
    assert_eq!(s["networks"][0]["network"], "default", "{s:#}");
    let text = ns.appcctl(&env, &["status", "info"]).stdout;
    assert!(
        text.contains(&format!("networks=default:ip4={ip}")),
        "{text}"
    );
    let list: Value =
        serde_json::from_str(&ns.appcctl(&env, &["list", "--format", "json"]).stdout).unwrap();
    assert_eq!(list[0]["networks"][0]["ip"], ip.as_str(), "{list:#}");
    ns.assert_clean("after the pod exited");
    // The bridge stays, with the gateway address, as docker0 does.
    let bridge = ns.sh("ip -4 -o addr show dev appc0").stdout;
    assert!(bridge.contains("172.16.28.1/24"), "{bridge}");
}

#[test]
fn the_images_hosts_file_is_kept_without_hosts_entry_and_dns_flags_write_resolv_conf() {
    if !can_run() {
        return;
    }
    let env = Env::new();
    let ns = NetNs::new();
    // The image brings its own /etc/hosts, and no resolv.conf.
    let image = busybox_image_with(
        &env,
        "ownhosts",
        "cat /etc/hosts; test -e /etc/resolv.conf && cat /etc/resolv.conf; true",
        &[("etc/hosts", "10.9.9.9\timage-own\n")],
    );
    let r = ns.appcctl(&env, &["run", &image]);
    r.ok();
    assert_eq!(r.stdout, "10.9.9.9\timage-own\n", "{}", r.stderr);
    let r = ns.appcctl(&env, &["run", "--net=none", "--dns", "10.0.0.1", &image]);
    r.ok();
    assert!(r.stdout.ends_with("nameserver 10.0.0.1\n"), "{}", r.stdout);
    // --dns=host copies the host's file (this machine's; it may be empty or missing).
    if let Ok(host) = fs::read_to_string("/etc/resolv.conf") {
        let r = ns.appcctl(&env, &["run", "--net=none", "--dns=host", &image]);
        r.ok();
        assert_eq!(
            r.stdout,
            format!("10.9.9.9\timage-own\n{host}"),
            "{}",
            r.stderr
        );
    }
}

#[test]
fn two_pods_get_distinct_addresses_and_reach_each_other() {
    if !can_run() {
        return;
    }
    let env = Env::new();
    let ns = NetNs::new();
    let server = busybox_image(&env, "server-a", "exec httpd -f -p 80 -h /www");
    let mut bg = ns.spawn(&env, "a", &["run", "--name", "a", &server]);
    let ip_a = running_ip(&ns, &env, "a");
    assert!(in_subnet(&ip_a), "{ip_a}");
    // The host reaches the pod directly (it is on the bridge).
    wait_until("pod a's server", || {
        http_get(&ns, &ip_a, 80).contains("hello from server-a")
    });
    let client = busybox_image(
        &env,
        "client-b",
        &format!(
            "ip -4 -o addr show dev eth0; printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 5 {ip_a} 80"
        ),
    );
    let r = ns.appcctl(&env, &["run", "--name", "b", &client]);
    r.ok();
    assert!(
        r.stdout.contains("hello from server-a"),
        "{}\n{}",
        r.stdout,
        r.stderr
    );
    let ip_b = status(&ns, &env, "b")["networks"][0]["ip"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(in_subnet(&ip_b) && ip_b != ip_a, "a={ip_a} b={ip_b}");
    assert_eq!(ns.pod_veths().len(), 1, "only a's veth is left");
    ns.appcctl(&env, &["stop", "a"]).ok();
    let _ = bg.wait();
    ns.assert_clean("after stop");
}

#[test]
fn none_has_only_loopback_and_host_sees_the_hosts_interfaces() {
    if !can_run() {
        return;
    }
    let env = Env::new();
    let ns = NetNs::new();
    let image = busybox_image(&env, "links", "ip -o link show");
    let r = ns.appcctl(&env, &["run", "--net=none", &image]);
    r.ok();
    let links: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(links.len(), 1, "{}", r.stdout);
    assert!(
        links[0].contains(": lo:") && links[0].contains("UP"),
        "{}",
        r.stdout
    );
    let mark = ns.sh("ip link add hostmark0 type veth peer name hostmark1");
    mark.ok();
    let r = ns.appcctl(&env, &["run", "--net=host", &image]);
    r.ok();
    assert!(r.stdout.contains("hostmark0"), "{}", r.stdout);
    ns.assert_clean("after host and none pods");
    assert!(
        !ns.sh("ip link show appc0").stdout.contains("appc0"),
        "no bridge for none/host"
    );
}

#[test]
fn ports_are_forwarded_from_the_hosts_addresses_and_localhost() {
    if !can_run() {
        return;
    }
    let env = Env::new();
    let ns = NetNs::new();
    // A client namespace on a link of its own to the test host (10.99.0.2 -> 10.99.0.1): its
    // traffic to a forwarded port comes in from outside, through prerouting and forwarding.
    let client = NetNs::new();
    ns.sh(&format!(
        "ip link add ext0 type veth peer name ext1 netns {} && ip addr add 10.99.0.1/24 dev ext0 \
         && ip link set ext0 up",
        client.holder.id()
    ))
    .ok();
    client
        .sh("ip addr add 10.99.0.2/24 dev ext1 && ip link set ext1 up")
        .ok();
    let server = busybox_image(&env, "web", "exec httpd -f -p 80 -h /www");

    // An unknown port name is refused before any pod exists.
    let r = ns.appcctl(&env, &["run", "--port", "nope:8080", &server]);
    assert_eq!(r.code, Some(254), "{}", r.stderr);
    assert!(
        r.stderr
            .contains("no app of the pod declares a port named \"nope\" (declared: www)"),
        "{}",
        r.stderr
    );
    let list = ns.appcctl(&env, &["list", "--format", "json"]).stdout;
    assert_eq!(list.trim(), "[]", "{list}");
    // --port needs an address of the pod's own.
    let r = ns.appcctl(&env, &["run", "--net=none", "--port", "www:8080", &server]);
    assert_eq!(r.code, Some(254), "{}", r.stderr);
    assert!(
        r.stderr.contains("--port needs --net=default"),
        "{}",
        r.stderr
    );

    let mut bg = ns.spawn(
        &env,
        "web",
        &["run", "--name", "web", "--port", "www:8080", &server],
    );
    let ip = running_ip(&ns, &env, "web");
    wait_until("the server through the host's address", || {
        http_get(&ns, "10.99.0.1", 8080).contains("hello from web")
    });
    let local = http_get(&ns, "127.0.0.1", 8080);
    assert!(local.contains("hello from web"), "via localhost: {local:?}");
    let outside = http_get(&client, "10.99.0.1", 8080);
    assert!(
        outside.contains("hello from web"),
        "from another host: {outside:?}"
    );
    // Only forwarded ports are: the pod's port 80 is not the host's.
    assert!(!http_get(&client, "10.99.0.1", 80).contains("hello"));
    assert!(!ns.pod_rules().is_empty());
    // A second pod cannot take the same host port.
    let r = ns.appcctl(&env, &["run", "--port", "www:8080", &server]);
    assert_eq!(r.code, Some(254), "{}", r.stderr);
    assert!(r.stderr.contains("already forwarded"), "{}", r.stderr);
    assert!(in_subnet(&ip));
    ns.appcctl(&env, &["stop", "web"]).ok();
    let _ = bg.wait();
    ns.assert_clean("after stop");
}

#[test]
fn kill_9_of_the_runner_is_cleaned_up_by_rm_and_by_gc() {
    if !can_run() {
        return;
    }
    let env = Env::new();
    let ns = NetNs::new();
    let server = busybox_image(&env, "crash", "exec httpd -f -p 80 -h /www");
    for (name, port, reclaim) in [("by-rm", "8081", "rm"), ("by-gc", "8082", "gc")] {
        let mut bg = ns.spawn(
            &env,
            name,
            &[
                "run",
                "--name",
                name,
                "--port",
                &format!("www:{port}"),
                &server,
            ],
        );
        running_ip(&ns, &env, name);
        let port_n: u16 = port.parse().expect("port");
        wait_until(&format!("pod {name}'s server"), || {
            http_get(&ns, "127.0.0.1", port_n).contains("hello from crash")
        });
        assert_eq!(ns.leases().len(), 1);
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(bg.id() as i32),
            nix::sys::signal::Signal::SIGKILL,
        )
        .expect("kill -9 appcctl");
        let _ = bg.wait();
        // The pod outlives its runner (it holds the lock), and so does its network.
        assert!(
            http_get(&ns, "127.0.0.1", port_n).contains("hello from crash"),
            "the pod should still serve after kill -9 of appcctl"
        );
        ns.appcctl(&env, &["stop", name]).ok();
        assert_eq!(ns.leases().len(), 1, "the lease outlives a killed runner");
        assert!(!ns.pod_rules().is_empty(), "so do its rules");
        let r = match reclaim {
            "rm" => ns.appcctl(&env, &["rm", name]),
            _ => ns.appcctl(&env, &["gc", "--grace-period", "0s"]),
        };
        r.ok();
        if reclaim == "gc" {
            assert!(
                r.stdout.contains("released address 172.16.28."),
                "{}",
                r.stdout
            );
        }
        ns.assert_clean(&format!("after kill -9 + stop + {reclaim}"));
    }
}

#[test]
fn concurrent_starts_get_distinct_addresses() {
    if !can_run() {
        return;
    }
    let env = Env::new();
    let ns = NetNs::new();
    let image = busybox_image(&env, "addr", "ip -4 -o addr show dev eth0");
    // Four appcctl processes race for the lock of the network's IPAM.
    let runs: Vec<Child> = (0..4)
        .map(|i| {
            ns.appcctl_cmd(&env, &["run", "--name", &format!("p{i}"), &image])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn appcctl")
        })
        .collect();
    let mut ips: Vec<String> = runs
        .into_iter()
        .map(|c| {
            let r: Run = c.wait_with_output().expect("wait").into();
            r.ok();
            let ip = r
                .stdout
                .split_whitespace()
                .skip_while(|w| *w != "inet")
                .nth(1)
                .unwrap_or_default()
                .to_owned();
            assert!(
                in_subnet(ip.split('/').next().unwrap_or("")),
                "{}",
                r.stdout
            );
            ip
        })
        .collect();
    ips.sort();
    ips.dedup();
    assert_eq!(ips.len(), 4, "{ips:?}");
    ns.assert_clean("after four pods");
}
