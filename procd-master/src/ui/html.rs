//! The pieces every page is made of: escaping, the layout, tables, a sparkline.

/// Escapes text for HTML content and attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A JSON value as table text.
pub fn cell(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::Null => "-".into(),
        serde_json::Value::String(s) => esc(s),
        other => esc(&other.to_string()),
    }
}

/// The dashboard's style sheet (`/ui/static/style.css`).
pub const STYLE: &str = "body{font:14px/1.4 system-ui,sans-serif;margin:0;color:#222}\
header{background:#1d2b3a;color:#fff;padding:.6em 1.2em;display:flex;gap:1.5em;align-items:center}\
header a{color:#fff;text-decoration:none}header .gap{flex:1}main{padding:1em 1.2em}\
table{border-collapse:collapse;margin:.4em 0 1.2em}td,th{border-bottom:1px solid #ddd;padding:.25em .8em;text-align:left}\
th{background:#f3f5f7}.bad{color:#b00020;font-weight:600}.ok{color:#137333}\
pre{background:#111;color:#ddd;padding:.6em;max-height:24em;overflow:auto;font-size:12px}\
form.inline{display:inline}form.scale{margin:.2em 0}svg{background:#f8f9fa;border:1px solid #ddd}";

/// What an app's page runs (`/ui/static/app.js`): every 2 s, its process table from
/// `/ui/apps/<app>/live`; its log streamed from `/ui/apps/<app>/logs` (server-sent events, from
/// the line after those on the page); the restart and rollback buttons, through the API
/// (`/ui/api/v1/...`, with the user's form value). Data from the script tag (`data-app`,
/// `data-after`, `data-csrf`). Log lines go in as text, never as HTML.
pub const SCRIPT: &str = r#"const me = document.currentScript.dataset;
const app = me.app;
const base = '/ui/apps/' + encodeURIComponent(app);
async function refresh() {
  try {
    const r = await fetch(base + '/live', {credentials: 'same-origin'});
    if (!r.ok) return;
    const v = await r.json();
    const t = document.createElement('template');
    t.innerHTML = v.ps;
    document.getElementById('ps').replaceWith(t.content.firstChild);
  } catch (e) {}
}
setInterval(refresh, 2000);
const log = document.getElementById('log');
let after = me.after;
function follow() {
  const es = new EventSource(base + '/logs?after=' + after);
  es.onmessage = function (e) {
    const v = JSON.parse(e.data);
    after = v.seq;
    const end = log.scrollTop + log.clientHeight >= log.scrollHeight - 4;
    log.textContent += (log.textContent ? '\n' : '') + v.line;
    if (end) log.scrollTop = log.scrollHeight;
  };
}
follow();
document.querySelectorAll('button.act').forEach(function (b) {
  b.addEventListener('click', async function () {
    const said = document.getElementById('acted');
    said.textContent = '…';
    const r = await fetch('/ui/api/v1/apps/' + encodeURIComponent(app) + '/' + b.dataset.act, {
      method: 'POST', credentials: 'same-origin',
      headers: {'content-type': 'application/json', 'x-zeroku-csrf': me.csrf}, body: '{}'});
    let v = {};
    try { v = await r.json(); } catch (e) {}
    said.textContent = r.ok ? (b.dataset.act + ': done') : ((v.error && v.error.message) || ('refused: ' + r.status));
  });
});
"#;

/// The terminal page's script (`/ui/static/run.js`): starts the command as `zeroku run` does
/// (`POST /ui/api/v1/apps/<app>/runs` with a terminal size) and joins its terminal over the
/// same WebSocket as the CLI (`.../runs/<n>/terminal`): keys and terminal bytes as binary
/// messages, a resize as a JSON text message. xterm.js draws it.
pub const RUN_SCRIPT: &str = r#"const me = document.currentScript.dataset;
const state = document.getElementById('state');
document.getElementById('run').addEventListener('submit', async function (ev) {
  ev.preventDefault();
  if (!window.Terminal) { state.textContent = 'this zeroku was built without xterm.js (Debian node-xterm)'; return; }
  const cols = 100, rows = 30;
  const r = await fetch('/ui/api/v1/apps/' + encodeURIComponent(me.app) + '/runs', {
    method: 'POST', credentials: 'same-origin',
    headers: {'content-type': 'application/json', 'x-zeroku-csrf': me.csrf},
    body: JSON.stringify({command: document.getElementById('command').value,
                          tty: {cols: cols, rows: rows, term: 'xterm-256color'}})});
  let v = {};
  try { v = await r.json(); } catch (e) {}
  if (!r.ok) { state.textContent = (v.error && v.error.message) || ('refused: ' + r.status); return; }
  state.textContent = v.id + ': starting';
  const box = document.getElementById('term');
  box.textContent = '';
  const term = new Terminal({cols: cols, rows: rows});
  term.open(box);
  window.zerokuTerm = term;
  const proto = location.protocol === 'https:' ? 'wss://' : 'ws://';
  const ws = new WebSocket(proto + location.host + '/ui/api/v1/apps/' + encodeURIComponent(me.app) + '/runs/' + v.n + '/terminal');
  ws.binaryType = 'arraybuffer';
  const enc = new TextEncoder(), dec = new TextDecoder();
  ws.onopen = function () { state.textContent = v.id + ': connected'; term.focus(); };
  ws.onmessage = function (e) {
    term.write(typeof e.data === 'string' ? e.data : dec.decode(new Uint8Array(e.data), {stream: true}));
  };
  ws.onclose = function (e) { state.textContent = v.id + ': ended' + (e.reason ? ' (' + e.reason + ')' : ''); };
  term.on('data', function (d) { if (ws.readyState === 1) ws.send(enc.encode(d)); });
});
"#;

/// xterm.js (Debian's node-xterm, bundled by build.rs) and its style sheet.
pub const XTERM_JS: &str = include_str!(concat!(env!("OUT_DIR"), "/xterm.js"));
pub const XTERM_CSS: &str = include_str!(concat!(env!("OUT_DIR"), "/xterm.css"));

/// A whole page: `title`, who is logged in (`None` on the log-in page), the body.
pub fn page(title: &str, who: Option<&str>, body: &str) -> String {
    let nav = match who {
        Some(w) => format!(
            "<a href=\"/ui/\">Cluster</a><span class=\"gap\"></span><span>{}</span>\
             <form class=\"inline\" method=\"post\" action=\"/ui/logout\"><button>Log out</button></form>",
            esc(w)
        ),
        None => String::new(),
    };
    format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{} · zeroku</title>\
         <link rel=\"stylesheet\" href=\"/ui/static/style.css\"></head>\
         <body><header><strong>zeroku</strong>{nav}</header>\
         <main>{body}</main></body></html>",
        esc(title)
    )
}

/// A table of `rows` (already escaped cells) under `head`.
pub fn table(head: &[&str], rows: &[Vec<String>], id: &str) -> String {
    let mut t = format!("<table id=\"{}\"><tr>", esc(id));
    for h in head {
        t.push_str(&format!("<th>{}</th>", esc(h)));
    }
    t.push_str("</tr>");
    if rows.is_empty() {
        t.push_str(&format!(
            "<tr><td colspan=\"{}\">none</td></tr>",
            head.len()
        ));
    }
    for r in rows {
        t.push_str("<tr>");
        for c in r {
            t.push_str(&format!("<td>{c}</td>"));
        }
        t.push_str("</tr>");
    }
    t.push_str("</table>");
    t
}

/// An SVG line of `points` (oldest first), `label` above it, scaled to its largest.
pub fn sparkline(label: &str, points: &[f64]) -> String {
    let (w, h) = (360.0, 60.0);
    let max = points.iter().copied().fold(0.0_f64, f64::max).max(1e-9);
    let step = if points.len() > 1 {
        w / (points.len() - 1) as f64
    } else {
        0.0
    };
    let path: Vec<String> = points
        .iter()
        .enumerate()
        .map(|(i, p)| {
            format!(
                "{:.1},{:.1}",
                i as f64 * step,
                h - p / max * (h - 4.0) - 2.0
            )
        })
        .collect();
    format!(
        "<figure><figcaption>{} (max {:.1})</figcaption><svg width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\">\
         <polyline fill=\"none\" stroke=\"#1a73e8\" stroke-width=\"2\" points=\"{}\"/></svg></figure>",
        esc(label),
        max,
        path.join(" ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn everything_from_users_is_escaped() {
        assert_eq!(
            esc("<script>alert('x')</script>&\""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;&quot;"
        );
        assert_eq!(cell(&serde_json::json!("<b>")), "&lt;b&gt;");
        assert!(sparkline("<x>", &[1.0, 3.0]).contains("&lt;x&gt;"));
    }
}
