//! Progress of long commands: a bar on a terminal (indicatif), plain log lines
//! otherwise (a pipe, a CI log, systemd's journal).

use std::io::IsTerminal;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use indicatif::{ProgressBar, ProgressStyle};
use lain_engine::progress::Progress;

use crate::commands::Output;

/// Chooses the bar when standard error is a terminal. Report lines go to standard
/// output either way.
pub fn reporter() -> Box<dyn Output> {
    if std::io::stderr().is_terminal() {
        Box::new(Bar::default())
    } else {
        Box::new(Lines::default())
    }
}

#[derive(Default)]
struct Bar {
    bar: Mutex<Option<ProgressBar>>,
}

impl Progress for Bar {
    fn phase(&self, name: &str, total: u64) {
        let mut bar = self.bar.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(done) = bar.take() {
            done.finish();
        }
        let next = if total > 0 {
            ProgressBar::new(total)
        } else {
            ProgressBar::new_spinner()
        };
        let template = if total > 0 {
            "{msg:<34} [{bar:30}] {percent:>3}% {elapsed_precise} eta {eta}"
        } else {
            "{msg:<34} {spinner} {pos} {elapsed_precise}"
        };
        if let Ok(style) = ProgressStyle::with_template(template) {
            next.set_style(style.progress_chars("=> "));
        }
        next.set_message(name.to_owned());
        *bar = Some(next);
    }

    fn advance(&self, units: u64) {
        if let Some(bar) = &*self.bar.lock().unwrap_or_else(|p| p.into_inner()) {
            bar.inc(units);
        }
    }
}

impl Output for Bar {
    fn line(&self, text: &str) {
        match &*self.bar.lock().unwrap_or_else(|p| p.into_inner()) {
            Some(bar) => bar.suspend(|| println!("{text}")),
            None => println!("{text}"),
        }
    }
}

impl Drop for Bar {
    fn drop(&mut self) {
        if let Some(bar) = self.bar.get_mut().ok().and_then(Option::take) {
            bar.finish();
        }
    }
}

impl Output for Lines {
    fn line(&self, text: &str) {
        println!("{text}");
    }
}

/// A line when a phase starts and at every tenth of it.
#[derive(Default)]
struct Lines {
    total: AtomicU64,
    done: AtomicU64,
    name: Mutex<String>,
}

impl Progress for Lines {
    fn phase(&self, name: &str, total: u64) {
        tracing::info!("{name}...");
        *self.name.lock().unwrap_or_else(|p| p.into_inner()) = name.to_owned();
        self.total.store(total, Ordering::Relaxed);
        self.done.store(0, Ordering::Relaxed);
    }

    fn advance(&self, units: u64) {
        let total = self.total.load(Ordering::Relaxed);
        let before = self.done.fetch_add(units, Ordering::Relaxed);
        if total == 0 {
            return;
        }
        let tenth = |n: u64| n.saturating_mul(10) / total;
        if tenth(before + units) > tenth(before) {
            let name = self.name.lock().unwrap_or_else(|p| p.into_inner());
            tracing::info!("{name}: {}%", (before + units).min(total) * 100 / total);
        }
    }
}
