//! Bundles xterm.js for the dashboard's terminal: Debian's `node-xterm` ships it as CommonJS
//! modules (`/usr/share/nodejs/xterm/lib`, no browser bundle, no dependencies outside it);
//! they are wrapped here, with a small `require`, into one script embedded in the binary.
//! Without the package the terminal page says so (scripts/deps.sh installs it).

use std::path::{Path, PathBuf};

fn modules(dir: &Path, root: &Path, out: &mut Vec<(String, PathBuf)>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<_> = entries.filter_map(Result::ok).map(|e| e.path()).collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            modules(&p, root, out);
        } else if let Some(rel) = p.strip_prefix(root).ok().and_then(|r| r.to_str()) {
            if let Some(id) = rel.strip_suffix(".js").filter(|id| !id.ends_with(".test")) {
                out.push((id.to_string(), p.clone()));
            }
        }
    }
}

fn main() {
    let lib = std::env::var("ZEROKU_XTERM_LIB")
        .unwrap_or_else(|_| "/usr/share/nodejs/xterm/lib".to_string());
    println!("cargo:rerun-if-env-changed=ZEROKU_XTERM_LIB");
    println!("cargo:rerun-if-changed={lib}");
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR"));
    let root = Path::new(&lib);
    let mut mods = Vec::new();
    modules(root, root, &mut mods);
    let mut js = String::new();
    if mods.iter().any(|(id, _)| id == "public/Terminal") {
        js.push_str("(function(){\"use strict\";var defs={};\n");
        for (id, path) in &mods {
            let src = std::fs::read_to_string(path).unwrap_or_default();
            let src: String = src
                .lines()
                .filter(|l| !l.starts_with("//# sourceMappingURL"))
                .collect::<Vec<_>>()
                .join("\n");
            js.push_str(&format!(
                "defs[{id:?}]=function(exports,require,module){{\n{src}\n}};\n"
            ));
        }
        js.push_str(
            "var cache={};\
             function resolve(from,rel){var p=from.split('/');p.pop();rel.split('/').forEach(function(s){if(s==='..')p.pop();else if(s!=='.')p.push(s);});return p.join('/');}\
             function load(id){if(cache[id])return cache[id].exports;var m={exports:{}};cache[id]=m;\
             if(!defs[id])throw new Error('xterm bundle: no module '+id);\
             defs[id](m.exports,function(r){return load(resolve(id,r));},m);return m.exports;}\
             window.Terminal=load('public/Terminal').Terminal;})();\n",
        );
    } else {
        println!("cargo:warning=xterm.js not found at {lib} (Debian's node-xterm): the dashboard's terminal will say it is missing");
        js.push_str("window.Terminal=null;\n");
    }
    std::fs::write(out_dir.join("xterm.js"), js).expect("write xterm.js");
    let css = std::fs::read_to_string(root.join("xterm.css")).unwrap_or_default();
    std::fs::write(out_dir.join("xterm.css"), css).expect("write xterm.css");
}
