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
