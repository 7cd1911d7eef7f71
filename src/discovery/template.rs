//! Template rendering (DS2, DS8): `{name}`, `{version}`, `{os}`, `{arch}`, `{ext}` and every
//! other label of the app string, by plain substitution.

use crate::schema::{AppString, host_os_arch};

/// The values a template may use: the image name and every label, with `version` defaulting to
/// `latest` and `os`/`arch` to this machine's (as rkt and actool did).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Variables(Vec<(String, String)>);

impl Variables {
    pub fn for_app(app: &AppString) -> Variables {
        let (os, arch) = host_os_arch();
        let mut vars = vec![("name".to_owned(), app.name.to_string())];
        for (key, default) in [("version", "latest"), ("os", os), ("arch", arch)] {
            let value = app.labels.get(key).unwrap_or(default);
            vars.push((key.to_owned(), value.to_owned()));
        }
        // A label called `name` cannot exist (the schema refuses it), so `{name}` is the image's.
        for l in app.labels.iter() {
            if !vars.iter().any(|(k, _)| k == l.name.as_str()) {
                vars.push((l.name.to_string(), l.value.clone()));
            }
        }
        Variables(vars)
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// Renders `template` with `vars` and `{ext}` = `ext` (`aci` or `aci.asc`). `None` when a
/// `{variable}` is left over: the template needs a label the app string does not have, so it
/// does not apply (the spec's meta05 case).
pub fn render(template: &str, vars: &Variables, ext: &str) -> Option<String> {
    let mut out = template.replace("{ext}", ext);
    for (key, value) in &vars.0 {
        out = out.replace(&format!("{{{key}}}"), value);
    }
    (!has_variable(&out)).then_some(out)
}

/// Whether `s` still holds a `{…}` placeholder.
fn has_variable(s: &str) -> bool {
    s.find('{')
        .is_some_and(|open| s[open..].find('}').is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(s: &str) -> Variables {
        Variables::for_app(&AppString::parse(s).unwrap())
    }

    #[test]
    fn defaults_and_labels() {
        let v = vars("example.com/app,channel=alpha");
        assert_eq!(v.get("name"), Some("example.com/app"));
        assert_eq!(v.get("version"), Some("latest"));
        assert_eq!(v.get("os"), Some(host_os_arch().0));
        assert_eq!(v.get("arch"), Some(host_os_arch().1));
        assert_eq!(v.get("channel"), Some("alpha"));
        let v = vars("example.com/app:1.0.0,os=linux,arch=aarch64");
        assert_eq!(v.get("version"), Some("1.0.0"));
        assert_eq!(v.get("arch"), Some("aarch64"));
    }

    #[test]
    fn renders_every_variable_and_both_extensions() {
        let v = vars("example.com/myapp:1.0.0,os=linux,arch=amd64,channel=beta");
        let t = "https://storage.example.com/{name}-{version}-{os}-{arch}-{channel}.{ext}";
        assert_eq!(
            render(t, &v, "aci").as_deref(),
            Some("https://storage.example.com/example.com/myapp-1.0.0-linux-amd64-beta.aci")
        );
        assert_eq!(
            render(t, &v, "aci.asc").as_deref(),
            Some("https://storage.example.com/example.com/myapp-1.0.0-linux-amd64-beta.aci.asc")
        );
    }

    #[test]
    fn templates_with_unknown_variables_are_skipped() {
        let v = vars("example.com/myapp:1.0.0");
        assert_eq!(render("https://s/{name}-{channel}.{ext}", &v, "aci"), None);
        assert_eq!(
            render("https://s/{name}.{ext}", &v, "aci").as_deref(),
            Some("https://s/example.com/myapp.aci")
        );
        // A lone brace is not a variable.
        assert_eq!(
            render("https://s/{name}}.{ext}", &v, "aci").as_deref(),
            Some("https://s/example.com/myapp}.aci")
        );
    }
}
