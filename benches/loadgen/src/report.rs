//! Collects every round's figures and renders the side-by-side table (Markdown):
//! medians per scenario and server, their ratio, CPU seconds, peak memory.

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::atomic::Ordering;

use crate::scenarios::{Measure, Scenario, Sizes, Unit, describe};
use crate::servers::{Kind, Peaks, Programs};

/// One scenario against one server in one round.
#[derive(Clone, Copy)]
pub struct Sample {
    /// In the scenario's unit.
    pub value: f64,
    /// Server CPU seconds (user + system) the scenario cost.
    pub cpu: f64,
    /// MiB moved (for CPU per GiB), when the unit is MiB/s.
    pub mib: f64,
}

impl Sample {
    pub fn new(unit: Unit, m: &Measure, cpu: f64) -> Sample {
        let value = match unit {
            Unit::Seconds => m.seconds / m.amount,
            _ => m.amount / m.seconds,
        };
        let mib = if unit == Unit::MibPerSec {
            m.amount
        } else {
            0.0
        };
        Sample { value, cpu, mib }
    }
}

pub struct Results {
    header: String,
    reference_label: &'static str,
    sizes: Sizes,
    runs: usize,
    sha256_floor: f64,
    samples: BTreeMap<(u8, usize), Vec<Sample>>,
    /// Peak RssAnon and RssFile (KiB) per server over all rounds.
    peaks: BTreeMap<u8, (u64, u64)>,
}

fn key(kind: Kind) -> u8 {
    match kind {
        Kind::Ours => 0,
        Kind::Reference => 1,
        Kind::Sink => 2,
    }
}

pub fn median(values: &mut [f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    Some(if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    })
}

/// The first line a command prints, or "unknown".
fn first_line(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .ok()
        .map(|o| {
            let text = if o.stdout.is_empty() {
                o.stderr
            } else {
                o.stdout
            };
            String::from_utf8_lossy(&text)
                .lines()
                .next()
                .unwrap_or("")
                .trim()
                .to_owned()
        })
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".into())
}

fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .and_then(|l| l.split_once(':'))
        .map_or("unknown CPU".to_owned(), |(_, m)| m.trim().to_owned());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_gib = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|kib| kib.parse::<f64>().ok())
        .map_or(0.0, |kib| kib / (1u64 << 20) as f64);
    format!(
        "{cores} cores ({model}), {mem_gib:.0} GiB, {}, {}",
        first_line("uname", &["-sr"]),
        first_line("sh", &["-c", ". /etc/os-release && echo $PRETTY_NAME"])
    )
}

impl Results {
    pub fn new(programs: &Programs, sizes: &Sizes, runs: usize, sha256_floor: f64) -> Results {
        let ours = programs.ours.display().to_string();
        let reference = programs.reference.display().to_string();
        let header = format!(
            "- date: {}\n- machine: {}\n- lain: `{}`\n- reference: `{}` ({})\n- skopeo: {}\n- rounds: {runs}; every figure is the median over the rounds\n",
            first_line("date", &["-u", "+%Y-%m-%d %H:%M UTC"]),
            machine(),
            first_line(&ours, &["--version"]),
            reference,
            first_line(&reference, &["--version"]),
            first_line("skopeo", &["--version"]),
        );
        Results {
            header,
            reference_label: programs.reference_label(),
            sizes: sizes.clone(),
            runs,
            sha256_floor,
            samples: BTreeMap::new(),
            peaks: BTreeMap::new(),
        }
    }

    pub fn add(&mut self, kind: Kind, scenario: usize, sample: Sample) {
        self.samples
            .entry((key(kind), scenario))
            .or_default()
            .push(sample);
    }

    pub fn memory(&mut self, kind: Kind, peaks: &Peaks) {
        let entry = self.peaks.entry(key(kind)).or_default();
        entry.0 = entry.0.max(peaks.rss_anon.load(Ordering::Relaxed));
        entry.1 = entry.1.max(peaks.rss_file.load(Ordering::Relaxed));
    }

    fn median_of(&self, kind: Kind, scenario: usize, pick: fn(&Sample) -> f64) -> Option<f64> {
        let samples = self.samples.get(&(key(kind), scenario))?;
        median(&mut samples.iter().map(pick).collect::<Vec<_>>())
    }

    pub fn render(&self, scenarios: &[Scenario]) -> String {
        let fmt = |v: Option<f64>, unit: Unit| match v {
            None => "–".to_owned(),
            Some(v) if unit == Unit::Seconds => format!("{v:.2} s"),
            Some(v) if v >= 100.0 => format!("{v:.0} {}", unit.label()),
            Some(v) => format!("{v:.1} {}", unit.label()),
        };
        let cpu = |v: Option<f64>| v.map_or("–".to_owned(), |v| format!("{v:.2}"));
        let mut out = String::new();
        out.push_str("## Side by side\n\n");
        out.push_str(&self.header);
        out.push('\n');
        out.push_str(&format!(
            "| scenario | size | lain | {} | ratio | lain CPU s | reference CPU s | client ceiling (sink) |\n",
            self.reference_label
        ));
        out.push_str("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |\n");
        for (i, s) in scenarios.iter().enumerate() {
            let ours = self.median_of(Kind::Ours, i, |x| x.value);
            let reference = self.median_of(Kind::Reference, i, |x| x.value);
            // The ratio always reads "times better": for durations, reference / lain.
            let ratio = match (ours, reference) {
                (Some(o), Some(r)) if s.unit == Unit::Seconds && o > 0.0 => {
                    format!("{:.1}×", r / o)
                }
                (Some(o), Some(r)) if r > 0.0 => format!("{:.1}×", o / r),
                _ => "–".into(),
            };
            out.push_str(&format!(
                "| {} | {} | {} | {} | {} | {} | {} | {} |\n",
                s.name,
                describe(s.name, &self.sizes),
                fmt(ours, s.unit),
                fmt(reference, s.unit),
                ratio,
                cpu(self.median_of(Kind::Ours, i, |x| x.cpu)),
                cpu(self.median_of(Kind::Reference, i, |x| x.cpu)),
                fmt(self.median_of(Kind::Sink, i, |x| x.value), s.unit),
            ));
        }
        out.push_str("\n### CPU per GiB pushed\n\n");
        out.push_str(&format!(
            "sha256 of 1 GiB on one core of this machine (the floor: every pushed byte is hashed once): {:.2} s CPU\n\n",
            self.sha256_floor
        ));
        out.push_str(
            "| scenario | lain CPU s / GiB | × sha256 | reference CPU s / GiB | × sha256 |\n",
        );
        out.push_str("| --- | ---: | ---: | ---: | ---: |\n");
        for (i, s) in scenarios.iter().enumerate() {
            if !s.name.starts_with("push large") {
                continue;
            }
            let per_gib = |kind| {
                let samples = self.samples.get(&(key(kind), i))?;
                let mut v: Vec<f64> = samples.iter().map(|x| x.cpu / (x.mib / 1024.0)).collect();
                median(&mut v)
            };
            let show = |v: Option<f64>| match v {
                Some(v) => (format!("{v:.2}"), format!("{:.2}", v / self.sha256_floor)),
                None => ("–".into(), "–".into()),
            };
            let (o, ox) = show(per_gib(Kind::Ours));
            let (r, rx) = show(per_gib(Kind::Reference));
            out.push_str(&format!("| {} | {o} | {ox} | {r} | {rx} |\n", s.name));
        }
        out.push_str(
            "\n### Peak memory over all rounds (sampled every 20 ms from /proc/PID/status)\n\n",
        );
        out.push_str(
            "| server | RssAnon (heap, stacks, caches) | RssFile (mapped files, page cache) |\n",
        );
        out.push_str("| --- | ---: | ---: |\n");
        for kind in [Kind::Ours, Kind::Reference] {
            if let Some((anon, file)) = self.peaks.get(&key(kind)) {
                let label = match kind {
                    Kind::Reference => self.reference_label,
                    _ => kind.label(),
                };
                out.push_str(&format!(
                    "| {label} | {:.1} MiB | {:.1} MiB |\n",
                    *anon as f64 / 1024.0,
                    *file as f64 / 1024.0
                ));
            }
        }
        out.push_str(&format!(
            "\n{} round(s); ratio = lain / reference for rates, reference / lain for durations.\n",
            self.runs
        ));
        out
    }
}
