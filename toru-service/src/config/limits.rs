//! Per-plugin resource limits (`[plugins.<id>]` `memory_max`, `memory_swap_max`,
//! `pids_max`, `cpu_max`), enforced through the plugin's cgroup where the controller
//! exists.

/// One cgroup limit: a number, or `max` (no limit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Max {
    /// `max`.
    Unlimited,
    /// The number the cgroup file gets.
    Value(u64),
}

/// cgroup v2's `cpu.max` period: quotas are in µs per 100 ms.
pub const CPU_PERIOD_USEC: u64 = 100_000;

/// What one plugin may use; `None` leaves the kernel's default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ResourceLimits {
    /// `memory.max`, in bytes.
    pub memory_max: Option<Max>,
    /// `memory.swap.max`, in bytes; unset with `memory_max` set, 0: a plugin at its
    /// memory limit is stopped there, not swapped out.
    pub memory_swap_max: Option<Max>,
    /// `pids.max`: processes and threads.
    pub pids_max: Option<Max>,
    /// `cpu.max` quota in µs per [`CPU_PERIOD_USEC`] (`"50%"` = 50000).
    pub cpu_max: Option<Max>,
}

impl ResourceLimits {
    /// Whether any limit is set.
    pub fn any(&self) -> bool {
        self.memory_max.is_some()
            || self.memory_swap_max.is_some()
            || self.pids_max.is_some()
            || self.cpu_max.is_some()
    }

    /// Reads the three keys of `[plugins.<id>]`; problems name `prefix.key`.
    pub(super) fn parse(
        prefix: &str,
        raw: &super::raw::RawPlugin,
        problems: &mut super::raw::Problems<'_>,
    ) -> Self {
        let mut check = |key: &str,
                         value: Option<toml::Value>,
                         parse: fn(&toml::Value) -> Result<Max, String>| {
            value.and_then(|v| match parse(&v) {
                Ok(max) => Some(max),
                Err(hint) => {
                    let key = format!("{prefix}.{key}");
                    problems.at(&key, format!("`{key}` = {v}: {hint}"));
                    None
                }
            })
        };
        Self {
            memory_max: check("memory_max", raw.memory_max.clone(), memory_limit),
            memory_swap_max: check("memory_swap_max", raw.memory_swap_max.clone(), swap),
            pids_max: check("pids_max", raw.pids_max.clone(), pids),
            cpu_max: check("cpu_max", raw.cpu_max.clone(), cpu),
        }
    }

    /// The `memory.swap.max` to write: as set, else 0 when `memory_max` is a number.
    pub fn swap_max(&self) -> Option<Max> {
        match (self.memory_swap_max, self.memory_max) {
            (Some(swap), _) => Some(swap),
            (None, Some(Max::Value(_))) => Some(Max::Value(0)),
            (None, _) => None,
        }
    }

    /// `memory_max` as the configuration writes it (`32M`), when set.
    pub fn memory_max_text(&self) -> Option<String> {
        self.memory_max.map(|max| show_bytes(Some(max)))
    }

    /// What changed from `old` to `self`, as `cpu_max 20% -> 50%`, one per key.
    pub fn changes_from(&self, old: &Self) -> Vec<String> {
        let show_cpu = |max: Option<Max>| match max {
            None => "unset".to_owned(),
            Some(Max::Unlimited) => "max".to_owned(),
            Some(Max::Value(n)) => format!("{}%", n as f64 / 1000.0),
        };
        let show_pids = |max: Option<Max>| match max {
            None => "unset".to_owned(),
            Some(Max::Unlimited) => "max".to_owned(),
            Some(Max::Value(n)) => n.to_string(),
        };
        let mut changes = Vec::new();
        let mut note = |key: &str, old: String, new: String| {
            if old != new {
                changes.push(format!("{key} {old} -> {new}"));
            }
        };
        note(
            "memory_max",
            show_bytes(old.memory_max),
            show_bytes(self.memory_max),
        );
        note(
            "memory_swap_max",
            show_bytes(old.swap_max()),
            show_bytes(self.swap_max()),
        );
        note(
            "pids_max",
            show_pids(old.pids_max),
            show_pids(self.pids_max),
        );
        note("cpu_max", show_cpu(old.cpu_max), show_cpu(self.cpu_max));
        changes
    }
}

/// The least `memory_max`: below it no program starts, and the plugin would be
/// killed at every start.
const MIN_MEMORY: u64 = 1 << 20;

/// `memory_max`: as [`memory`], and at least [`MIN_MEMORY`].
fn memory_limit(value: &toml::Value) -> Result<Max, String> {
    match memory(value)? {
        Max::Value(n) if n < MIN_MEMORY => Err(format!(
            "{n} bytes is less than any program needs: at least \"1M\""
        )),
        max => Ok(max),
    }
}

/// A byte limit as the configuration writes it: `32M`, `max`, `unset`.
fn show_bytes(max: Option<Max>) -> String {
    match max {
        None => "unset".to_owned(),
        Some(Max::Unlimited) => "max".to_owned(),
        Some(Max::Value(n)) if n != 0 && n % (1 << 20) == 0 => format!("{}M", n >> 20),
        Some(Max::Value(n)) => n.to_string(),
    }
}

/// `memory_swap_max`: as `memory_max`, but 0 (no swap at all) is a value.
fn swap(value: &toml::Value) -> Result<Max, String> {
    match value {
        toml::Value::Integer(0) => Ok(Max::Value(0)),
        toml::Value::String(s) if s.trim() == "0" => Ok(Max::Value(0)),
        other => memory(other),
    }
}

/// Bytes as an integer, or a string: `"268435456"`, `"256K"`, `"256M"`,
/// `"1G"`, `"1T"` (powers of 1024), or `"max"`.
fn memory(value: &toml::Value) -> Result<Max, String> {
    const HINT: &str = "write bytes (268435456), \"256M\", \"1G\" or \"max\"";
    let bytes = match value {
        toml::Value::Integer(n) => u64::try_from(*n).ok(),
        toml::Value::String(s) if s == "max" => return Ok(Max::Unlimited),
        toml::Value::String(s) => {
            let s = s.trim();
            let (digits, shift) = match s.char_indices().last() {
                Some((at, c)) if c.is_ascii_alphabetic() => {
                    let shift = match c.to_ascii_uppercase() {
                        'K' => 10,
                        'M' => 20,
                        'G' => 30,
                        'T' => 40,
                        _ => return Err(HINT.to_owned()),
                    };
                    (&s[..at], shift)
                }
                _ => (s, 0),
            };
            digits
                .parse::<u64>()
                .ok()
                .and_then(|n| n.checked_mul(1 << shift))
        }
        _ => None,
    };
    match bytes {
        Some(0) => Err("must be above zero".to_owned()),
        Some(n) => Ok(Max::Value(n)),
        None => Err(HINT.to_owned()),
    }
}

/// An integer of at least 1, or `"max"`.
fn pids(value: &toml::Value) -> Result<Max, String> {
    match value {
        toml::Value::Integer(n) if *n >= 1 => Ok(Max::Value(*n as u64)),
        toml::Value::Integer(_) => Err("must be at least 1".to_owned()),
        toml::Value::String(s) if s == "max" => Ok(Max::Unlimited),
        _ => Err("write a number of processes (64) or \"max\"".to_owned()),
    }
}

/// A share of one CPU: `"50%"`, `"12.5%"`, `"200%"` (two CPUs), or `"max"`.
fn cpu(value: &toml::Value) -> Result<Max, String> {
    const HINT: &str = "write a share of one CPU: \"50%\", \"200%\" (two CPUs) or \"max\"";
    let toml::Value::String(s) = value else {
        return Err(HINT.to_owned());
    };
    if s == "max" {
        return Ok(Max::Unlimited);
    }
    let percent = s
        .trim()
        .strip_suffix('%')
        .and_then(|p| p.trim().parse::<f64>().ok())
        .filter(|p| p.is_finite())
        .ok_or_else(|| HINT.to_owned())?;
    // The kernel refuses quotas under 1 ms per period.
    if percent < 1.0 {
        return Err("must be at least \"1%\"".to_owned());
    }
    if percent > 100_000.0 {
        return Err("is more CPUs than any machine has".to_owned());
    }
    Ok(Max::Value((percent * 1000.0).round() as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(text: &str) -> toml::Value {
        toml::Value::String(text.to_owned())
    }

    #[test]
    fn memory_sizes() {
        assert_eq!(memory(&toml::Value::Integer(4096)), Ok(Max::Value(4096)));
        assert_eq!(memory(&s("4096")), Ok(Max::Value(4096)));
        assert_eq!(memory(&s("256K")), Ok(Max::Value(256 << 10)));
        assert_eq!(memory(&s("256M")), Ok(Max::Value(256 << 20)));
        assert_eq!(memory(&s("2g")), Ok(Max::Value(2 << 30)));
        assert_eq!(memory(&s("1T")), Ok(Max::Value(1 << 40)));
        assert_eq!(memory(&s("max")), Ok(Max::Unlimited));
        for bad in ["", "M", "12X", "-1M", "1.5G", "lots", "99999999999T"] {
            assert!(memory(&s(bad)).is_err(), "{bad:?} accepted");
        }
        assert!(memory(&toml::Value::Integer(0)).is_err());
        assert!(memory(&toml::Value::Integer(-5)).is_err());
        assert!(memory(&toml::Value::Boolean(true)).is_err());
    }

    #[test]
    fn pids_counts() {
        assert_eq!(pids(&toml::Value::Integer(64)), Ok(Max::Value(64)));
        assert_eq!(pids(&s("max")), Ok(Max::Unlimited));
        assert!(pids(&toml::Value::Integer(0)).is_err());
        assert!(pids(&s("64")).is_err());
    }

    #[test]
    fn cpu_shares() {
        assert_eq!(cpu(&s("50%")), Ok(Max::Value(50_000)));
        assert_eq!(cpu(&s("12.5%")), Ok(Max::Value(12_500)));
        assert_eq!(cpu(&s("200%")), Ok(Max::Value(200_000)));
        assert_eq!(cpu(&s("max")), Ok(Max::Unlimited));
        for bad in ["50", "0%", "0.5%", "half", "NaN%", "inf%"] {
            assert!(cpu(&s(bad)).is_err(), "{bad:?} accepted");
        }
        assert!(cpu(&toml::Value::Integer(50)).is_err());
    }
}
