//! App settings (`zeroku apps:settings`): the values the layers below the
//! API read. The API validates every setting before it is stored; the
//! cluster reads them back with these functions.

/// A `cpu` setting (cores, e.g. `0.5`) in thousandths of a core; 0 is no
/// limit.
pub fn cpu_millis(v: &str) -> Option<u32> {
    let cores: f64 = v.trim().parse().ok()?;
    if cores == 0.0 {
        return Some(0);
    }
    (0.01..=256.0)
        .contains(&cores)
        .then(|| (cores * 1000.0).round() as u32)
}

/// An `hsts` setting as a `Strict-Transport-Security` max-age: `off` is `Some(None)`, `on` a
/// year, else seconds (at most two years); `None` when it is none of these.
pub fn hsts_max_age(v: &str) -> Option<Option<u64>> {
    match v.trim() {
        "off" => Some(None),
        "on" => Some(Some(31_536_000)),
        s => s
            .parse::<u64>()
            .ok()
            .filter(|n| *n <= 2 * 31_536_000)
            .map(Some),
    }
}

/// The base domain apps answer under (`<app>.<base>`), from the `app_url` setting
/// (`http://{app}.example.com:8080` → `example.com`).
pub fn base_domain(app_url: &str) -> Option<String> {
    let rest = app_url.split_once("://").map_or(app_url, |(_, r)| r);
    let host = rest.split(['/', ':']).next()?;
    host.strip_prefix("{app}.").map(str::to_ascii_lowercase)
}
