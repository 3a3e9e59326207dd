//! Environment profiles: `[profile.NAME]` in `.config/shakedown.toml` and
//! `.env.NAME` files, and the check that every variable a scenario needs is set
//! before anything runs. Values may be secrets: errors and messages name
//! variables and files, never values.

use shakedown_spec::Scenario;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Where profiles are declared, relative to a project directory.
pub const CONFIG_FILE: &str = ".config/shakedown.toml";

/// The variables a profile provides, each with the file it came from.
#[derive(Debug, Clone, Default)]
pub struct Profile {
    pub name: String,
    pub vars: BTreeMap<String, Var>,
    /// Every file the profile was read from, in precedence order.
    pub sources: Vec<PathBuf>,
}

/// One variable of a profile. The value is a secret: it is never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Var {
    pub value: String,
    pub source: PathBuf,
}

impl std::fmt::Debug for Var {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Var(<hidden> from {})", self.source.display())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    #[error("read {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("parse {path}: {message}")]
    Parse { path: String, message: String },
    #[error("find profile `{name}`: no `[profile.{name}]` in {configs} and no `.env.{name}` in {dirs}")]
    Missing { name: String, configs: String, dirs: String },
    #[error("load the env file {path} named by profile `{name}` in {config}: {source}")]
    EnvFile { name: String, path: String, config: String, source: std::io::Error },
}

/// Loads profile `name` for a scenario in `scenario_dir`, run from `cwd`.
///
/// Earlier sources win: `[profile.NAME].env`, then its `env_file`, then
/// `.env.NAME` next to the scenario, then `.env.NAME` in `cwd`. Finding none of
/// them is an error, so a misspelt profile never runs with nothing set.
pub fn load(name: &str, scenario_dir: &Path, cwd: &Path) -> Result<Profile, ProfileError> {
    let mut profile = Profile { name: name.to_string(), ..Profile::default() };
    let configs = config_candidates(scenario_dir, cwd);
    if let Some(config) = configs.iter().find(|c| c.is_file()) {
        load_config(&mut profile, config)?;
    }
    let env_name = format!(".env.{name}");
    let mut dirs = vec![scenario_dir.to_path_buf()];
    if !same_dir(scenario_dir, cwd) {
        dirs.push(cwd.to_path_buf());
    }
    for dir in &dirs {
        let path = dir.join(&env_name);
        if path.is_file() {
            let text = read(&path)?;
            add_vars(&mut profile, parse_env_file(&text, &path)?, &path);
        }
    }
    if profile.sources.is_empty() {
        return Err(ProfileError::Missing { name: name.to_string(), configs: list(&configs), dirs: list(&dirs) });
    }
    Ok(profile)
}

/// Reads `[profile.NAME]` from a config file, if it has one.
fn load_config(profile: &mut Profile, config: &Path) -> Result<(), ProfileError> {
    let parse_err = |message: String| ProfileError::Parse { path: config.display().to_string(), message };
    let table: toml::Table = read(config)?.parse().map_err(|e: toml::de::Error| parse_err(e.to_string()))?;
    let Some(entry) = table.get("profile").and_then(|p| p.get(&profile.name)) else { return Ok(()) };
    let entry = entry.as_table().ok_or_else(|| parse_err(format!("`profile.{}` is not a table", profile.name)))?;
    let mut vars = BTreeMap::new();
    if let Some(env) = entry.get("env") {
        let env = env.as_table().ok_or_else(|| parse_err(format!("`profile.{}.env` is not a table", profile.name)))?;
        for (k, v) in env {
            let v =
                v.as_str().ok_or_else(|| parse_err(format!("`profile.{}.env.{k}` is not a string", profile.name)))?;
            vars.insert(k.clone(), v.to_string());
        }
    }
    add_vars(profile, vars, config);
    if let Some(file) = entry.get("env_file") {
        let file =
            file.as_str().ok_or_else(|| parse_err(format!("`profile.{}.env_file` is not a string", profile.name)))?;
        // Relative to the project directory, the one holding `.config/`.
        let path = config.parent().and_then(Path::parent).unwrap_or(Path::new(".")).join(file);
        let text = crate::input::read_small(&path).map_err(|source| ProfileError::EnvFile {
            name: profile.name.clone(),
            path: path.display().to_string(),
            config: config.display().to_string(),
            source,
        })?;
        add_vars(profile, parse_env_file(&text, &path)?, &path);
    }
    Ok(())
}

/// Adds variables the profile does not have yet: earlier sources win.
fn add_vars(profile: &mut Profile, vars: BTreeMap<String, String>, source: &Path) {
    profile.sources.push(source.to_path_buf());
    for (k, value) in vars {
        profile.vars.entry(k).or_insert_with(|| Var { value, source: source.to_path_buf() });
    }
}

/// `.config/shakedown.toml` in the scenario's directory and each one above it, then in `cwd`.
fn config_candidates(scenario_dir: &Path, cwd: &Path) -> Vec<PathBuf> {
    let start = scenario_dir.canonicalize().unwrap_or_else(|_| scenario_dir.to_path_buf());
    let mut found: Vec<PathBuf> = start.ancestors().map(|d| d.join(CONFIG_FILE)).collect();
    let in_cwd = cwd.join(CONFIG_FILE);
    if !found.contains(&in_cwd) {
        found.push(in_cwd);
    }
    found
}

/// Parses `KEY=VALUE` lines: blank lines and `#` comments skipped, an optional
/// `export ` prefix, and values optionally in matching single or double quotes.
pub fn parse_env_file(text: &str, path: &Path) -> Result<BTreeMap<String, String>, ProfileError> {
    let mut vars = BTreeMap::new();
    for (idx, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let bad = |what: &str| ProfileError::Parse {
            path: format!("{}:{}", path.display(), idx + 1),
            message: format!("{what}; expected KEY=VALUE"),
        };
        let (key, value) = line.split_once('=').ok_or_else(|| bad("no `=` on the line"))?;
        let key = key.trim();
        if !is_var_name(key) {
            return Err(bad("the key is not a variable name"));
        }
        vars.insert(key.to_string(), unquote(value.trim()).to_string());
    }
    Ok(vars)
}

fn unquote(v: &str) -> &str {
    for q in ['"', '\''] {
        if v.len() >= 2 && v.starts_with(q) && v.ends_with(q) {
            return &v[1..v.len() - 1];
        }
    }
    v
}

fn is_var_name(s: &str) -> bool {
    s.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The variables `s` needs (`env_required` and every `{env.NAME}` in its
/// templates) that neither the environment nor the profile sets.
pub fn missing_vars(s: &Scenario, profile: Option<&Profile>, is_set: impl Fn(&str) -> bool) -> Vec<String> {
    let mut needed: Vec<String> = s.env_required.iter().map(|v| v.get_ref().clone()).collect();
    needed.extend(s.env_refs());
    needed.sort();
    needed.dedup();
    needed.retain(|v| !is_set(v) && !profile.is_some_and(|p| p.vars.contains_key(v)));
    needed
}

/// The message for missing variables: which, for which scenario, and where to set them.
pub fn missing_help(scenario: &str, file: &Path, missing: &[String], profile: Option<&Profile>) -> String {
    let dir = file.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let names = missing.join(", ");
    let where_ = match profile {
        Some(p) => {
            format!("add them to profile `{}` (read from {}), or export them in the shell", p.name, list(&p.sources))
        }
        None => format!(
            "export them in the shell, or put them in {} (KEY=VALUE lines) or under `[profile.NAME] env = {{ ... }}` \
             in {CONFIG_FILE}, and pass `--profile NAME`",
            dir.join(".env.NAME").display()
        ),
    };
    format!(
        "scenario `{scenario}` ({}) needs {names}, which {} not set: {where_}",
        file.display(),
        if missing.len() == 1 { "is" } else { "are" }
    )
}

fn read(path: &Path) -> Result<String, ProfileError> {
    crate::input::read_small(path).map_err(|source| ProfileError::Read { path: path.display().to_string(), source })
}

fn same_dir(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

fn list(paths: &[PathBuf]) -> String {
    paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_files_skip_comments_and_strip_quotes() {
        let text = "# a comment\n\nA=1\nexport B = \"two words\"\nC='x#y'\nD=\n";
        let vars = parse_env_file(text, Path::new(".env.t")).unwrap();
        let got: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(got, [("A", "1"), ("B", "two words"), ("C", "x#y"), ("D", "")]);
    }

    #[test]
    fn env_file_errors_name_the_line_not_the_value() {
        let err = parse_env_file("A=1\nsecret-value\n", Path::new(".env.t")).unwrap_err().to_string();
        assert!(err.contains(".env.t:2"), "{err}");
        assert!(!err.contains("secret-value"), "{err}");
        assert!(parse_env_file("1A=x\n", Path::new("f")).is_err());
    }

    #[test]
    fn earlier_sources_win_and_values_stay_hidden() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir(tmp.path().join(".config")).unwrap();
        let config = "[profile.ci]\nenv = { A = \"from-config\" }\nenv_file = \"ci.env\"\n";
        std::fs::write(tmp.path().join(CONFIG_FILE), config).unwrap();
        std::fs::write(tmp.path().join("ci.env"), "A=from-file\nB=from-file\n").unwrap();
        std::fs::write(tmp.path().join(".env.ci"), "C=dotenv\nB=dotenv\n").unwrap();
        let p = load("ci", tmp.path(), tmp.path()).unwrap();
        let got: Vec<(&str, &str)> = p.vars.iter().map(|(k, v)| (k.as_str(), v.value.as_str())).collect();
        assert_eq!(got, [("A", "from-config"), ("B", "from-file"), ("C", "dotenv")]);
        assert!(!format!("{p:?}").contains("from-config"), "Debug hides values");
        let err = load("nope", tmp.path(), tmp.path()).unwrap_err().to_string();
        assert!(err.contains("`[profile.nope]`") && err.contains(".env.nope"), "{err}");
    }
}
