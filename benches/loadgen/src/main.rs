//! `loadgen`: drives this registry and the reference registry (Debian's
//! docker-registry, distribution 2.8) through the same V2 API scenarios, one fresh
//! server at a time, and prints one side-by-side table. `benches/run` is the
//! documented way to call it; `benches/RESULTS.md` is its output.

mod abuse;
mod auth;
mod client;
mod data;
mod gc;
mod report;
mod scale;
mod scenarios;
mod servers;
mod sink;
mod soak;
mod uploads;

use std::path::PathBuf;
use std::process::ExitCode;

use report::{Results, Sample};
use scenarios::{Fixture, Sizes, Target};
use servers::{Kind, Programs, Server};

const USAGE: &str = "usage: loadgen compare [--runs N] [--quick] [--connections N]
                       [--servers lain,reference,sink]
                       [--registry PATH] [--reference PATH | --baseline PATH]
                       [--scratch DIR]
                       [--only NAME,NAME] [--no-scale]
       loadgen drive ADDR [--quick] [--only NAME,NAME] [--connections N]
       loadgen populate DIR BLOBS TAGS [LARGE_MIB]
       loadgen gc-populate DIR BLOBS MANIFESTS LARGE_MIB
       loadgen gc-push ADDR MANIFESTS BLOBS_PER_MANIFEST
       loadgen gc-online ADDR REGISTRY DATA_DIR SECONDS
       loadgen auth-cost OPEN_ADDR TOKEN_ADDR TOKEN SECONDS
       loadgen sign-token KEY_PEM KID ISSUER SERVICE
       loadgen many-uploads CLIENTS CHUNKS CHUNK_KIB PAUSE_MS [--servers lain,reference]
                       [--registry PATH] [--reference PATH] [--scratch DIR]
       loadgen soak SECONDS CLIENTS [--registry PATH] [--scratch DIR]
       loadgen abuse [--servers lain,reference] [--registry PATH] [--reference PATH]
       loadgen sha256
       loadgen sink ADDR

compare  starts each server with a fresh data directory under --scratch (default: a
         new directory in $TMPDIR), runs every scenario against it, stops it, and
         after N rounds (default 3) prints the medians side by side as Markdown.
         Then the scale check: a store of 1,000,000 blobs and 100,000 tags is built,
         the registry's start-up on it is timed, and the small-object scenarios
         run against it and against an empty store (--no-scale skips this; --quick
         shrinks everything).
         --connections sets how many connections the small-blob, manifest and
         mount scenarios use (default 32).
         --only runs just the scenarios whose names contain one of the NAMEs (and
         the scale check only if one NAME is `scale`).
         --baseline PATH takes an earlier build of this registry as the reference
         (served with this registry's configuration): what a change costs, side by
         side in one run.
drive    runs the scenarios once against a registry already listening on ADDR
         (host:port) and prints each figure; for profiling a server by hand.
populate builds the scale check's store in DIR/data (BLOBS blobs, TAGS tags, and
         LARGE_MIB MiB of 64 MiB blobs) and keeps it, for `registry serve`,
         `registry fsck` (benches/fsck) and `drive` by hand.
gc-*     garbage collection at scale (benches/gc): a store built through the engine
         with every other image deleted; the same shape pushed over HTTP (for
         distribution's garbage-collect beside ours); push rates alone and during an
         online collection.
auth-*   what token auth costs (benches/auth): GET rates without and with a token,
         side by side; sign-token makes the token.
many-uploads  CLIENTS clients at once each open an upload session and send their
         blob in CHUNKS PATCHes of CHUNK_KIB KiB, PAUSE_MS apart, then PUT; for each
         server in turn: pushes accepted, refused (429) and failed, the aggregate
         rate, the server's peak RssAnon and CPU.
soak     SECONDS of mixed traffic from CLIENTS clients against this registry
         (pushes monolithic and chunked, pulls checked, deletes, listings, a
         collection every 20 s): requests and errors per kind, latency
         percentiles, RSS and open file descriptors over time.
abuse    hostile clients phase by phase (slowloris heads and bodies, idle
         keep-alive connections, huge header sets, 100,000 abandoned upload
         sessions) while a well-behaved client pushes and pulls: its rate, failures
         and latency, and the server's peak memory and open file descriptors.
sha256   prints this machine's sha256 rate on one core (the registry's own code).
sink     a server that answers the V2 API from memory without storing blob bytes:
         the scenarios run against it give the load generator's own ceiling.";

struct Args {
    runs: usize,
    sizes: Sizes,
    kinds: Vec<Kind>,
    programs: Programs,
    scratch: Option<PathBuf>,
    /// Only the scenarios whose name contains one of these (for profiling one path).
    only: Vec<String>,
    /// The scale check's store; `None` skips it.
    scale: Option<scale::Scale>,
}

fn parse(args: &[String]) -> Result<Args, String> {
    let loadgen = std::env::current_exe().map_err(|e| format!("own path: {e}"))?;
    let sibling = loadgen.with_file_name("registry");
    let mut parsed = Args {
        runs: 3,
        sizes: Sizes::full(),
        kinds: vec![Kind::Sink, Kind::Ours, Kind::Reference],
        programs: Programs {
            ours: sibling,
            reference: PathBuf::from("/usr/bin/docker-registry"),
            reference_is_baseline: false,
            loadgen,
        },
        scratch: None,
        only: Vec::new(),
        scale: Some(scale::Scale {
            blobs: 1_000_000,
            tags: 100_000,
            large_mib: 0,
        }),
    };
    let mut connections = None;
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut value = || {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{arg} needs a value"))
        };
        match arg.as_str() {
            "--runs" => {
                parsed.runs = value()?
                    .parse()
                    .map_err(|_| "--runs takes a number".to_owned())?;
            }
            "--connections" => {
                connections = Some(
                    value()?
                        .parse()
                        .map_err(|_| "--connections takes a number".to_owned())?,
                );
            }
            "--quick" => {
                parsed.sizes = Sizes::quick();
                parsed.scale = Some(scale::Scale {
                    blobs: 20_000,
                    tags: 2_000,
                    large_mib: 0,
                });
            }
            "--no-scale" => parsed.scale = None,
            "--servers" => {
                parsed.kinds = value()?
                    .split(',')
                    .map(|k| match k {
                        "lain" => Ok(Kind::Ours),
                        "reference" => Ok(Kind::Reference),
                        "sink" => Ok(Kind::Sink),
                        other => Err(format!("unknown server {other}")),
                    })
                    .collect::<Result<_, _>>()?;
            }
            "--registry" => parsed.programs.ours = PathBuf::from(value()?),
            "--reference" => parsed.programs.reference = PathBuf::from(value()?),
            "--baseline" => {
                parsed.programs.reference = PathBuf::from(value()?);
                parsed.programs.reference_is_baseline = true;
            }
            "--scratch" => parsed.scratch = Some(PathBuf::from(value()?)),
            "--only" => parsed.only = value()?.split(',').map(str::to_owned).collect(),
            other => return Err(format!("unknown argument {other}\n{USAGE}")),
        }
    }
    if let Some(n) = connections {
        if n == 0 {
            return Err("--connections must be at least 1".into());
        }
        parsed.sizes.small_concurrency = n;
    }
    if parsed.runs == 0 {
        return Err("--runs must be at least 1".into());
    }
    Ok(parsed)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("sink") if args.len() == 2 => sink::run(&args[1]),
        Some("compare") => parse(&args[1..]).and_then(compare),
        Some("populate") if (4..=5).contains(&args.len()) => populate(&args[1..]),
        Some("gc-populate") if args.len() == 5 => gc_populate(&args[1..]),
        Some("gc-push") if args.len() == 4 => {
            let count = |s: &str| s.parse::<usize>().map_err(|_| format!("{s}: not a count"));
            let addr = args[1].parse().map_err(|e| format!("{}: {e}", args[1]));
            addr.and_then(|addr| gc::push(addr, count(&args[2])?, count(&args[3])?))
        }
        Some("auth-cost") if args.len() == 5 => {
            let open = args[1].parse().map_err(|e| format!("{}: {e}", args[1]));
            let guarded = args[2].parse().map_err(|e| format!("{}: {e}", args[2]));
            let seconds = args[4]
                .parse::<f64>()
                .map_err(|e| format!("{}: {e}", args[4]));
            open.and_then(|open| auth::cost(open, guarded?, &args[3], seconds?))
        }
        Some("sign-token") if args.len() == 5 => std::fs::read(&args[1])
            .map_err(|e| format!("{}: {e}", args[1]))
            .and_then(|key| auth::sign(&key, &args[2], &args[3], &args[4]))
            .map(|token| println!("{token}")),
        Some("gc-online") if args.len() == 5 => {
            let addr = args[1].parse().map_err(|e| format!("{}: {e}", args[1]));
            let seconds = args[4]
                .parse::<f64>()
                .map_err(|e| format!("{}: {e}", args[4]));
            addr.and_then(|addr| {
                gc::online(
                    addr,
                    &PathBuf::from(&args[2]),
                    &PathBuf::from(&args[3]),
                    seconds?,
                )
            })
        }
        Some("many-uploads") if args.len() >= 5 => many_uploads(&args[1..]),
        Some("soak") if args.len() >= 3 => soak(&args[1..]),
        Some("abuse") => abuse(&args[1..]),
        Some("sha256") if args.len() == 1 => {
            let seconds = data::sha256_cpu_per_gib(&data::pseudo_random(9, 64 << 20), 16);
            println!("sha256 on one core: {:.0} MiB/s", 1024.0 / seconds);
            Ok(())
        }
        Some("drive") if args.len() >= 2 => {
            parse(&args[2..]).and_then(|parsed| drive(&args[1], &parsed))
        }
        _ => Err(USAGE.to_owned()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("loadgen: {message}");
            ExitCode::FAILURE
        }
    }
}

fn many_uploads(args: &[String]) -> Result<(), String> {
    let number = |s: &String| {
        s.parse::<u64>()
            .map_err(|_| format!("{s}: not a number\n{USAGE}"))
    };
    let load = uploads::Load {
        clients: number(&args[0])? as usize,
        chunks: number(&args[1])? as usize,
        chunk_bytes: number(&args[2])? as usize * 1024,
        pause: std::time::Duration::from_millis(number(&args[3])?),
    };
    if load.clients == 0 || load.chunks == 0 {
        return Err("CLIENTS and CHUNKS must be at least 1".into());
    }
    let mut parsed = parse(&args[4..])?;
    parsed.kinds.retain(|k| *k != Kind::Sink);
    let scratch = match &parsed.scratch {
        Some(dir) => dir.clone(),
        None => std::env::temp_dir().join(format!("lain-uploads-{}", std::process::id())),
    };
    std::fs::create_dir_all(&scratch).map_err(|e| format!("{}: {e}", scratch.display()))?;
    let outcome = uploads::run(&load, &parsed.kinds, &parsed.programs, &scratch);
    let _ = std::fs::remove_dir_all(&scratch);
    print!("{}", outcome?);
    Ok(())
}

fn soak(args: &[String]) -> Result<(), String> {
    let number = |s: &String| {
        s.parse::<u64>()
            .map_err(|_| format!("{s}: not a number\n{USAGE}"))
    };
    let soak = soak::Soak {
        seconds: number(&args[0])?,
        clients: number(&args[1])? as usize,
    };
    if soak.clients == 0 {
        return Err("CLIENTS must be at least 1".into());
    }
    let parsed = parse(&args[2..])?;
    let scratch = match &parsed.scratch {
        Some(dir) => dir.clone(),
        None => std::env::temp_dir().join(format!("lain-soak-{}", std::process::id())),
    };
    std::fs::create_dir_all(&scratch).map_err(|e| format!("{}: {e}", scratch.display()))?;
    let outcome = soak::run(&soak, &parsed.programs, &scratch);
    let _ = std::fs::remove_dir_all(&scratch);
    print!("{}", outcome?);
    Ok(())
}

fn abuse(args: &[String]) -> Result<(), String> {
    let mut parsed = parse(args)?;
    parsed.kinds.retain(|k| *k != Kind::Sink);
    let scratch = match &parsed.scratch {
        Some(dir) => dir.clone(),
        None => std::env::temp_dir().join(format!("lain-abuse-{}", std::process::id())),
    };
    std::fs::create_dir_all(&scratch).map_err(|e| format!("{}: {e}", scratch.display()))?;
    let outcome = abuse::run(&parsed.kinds, &parsed.programs, &scratch);
    let _ = std::fs::remove_dir_all(&scratch);
    print!("{}", outcome?);
    Ok(())
}

fn populate(args: &[String]) -> Result<(), String> {
    let count = |s: &String| {
        s.parse::<usize>()
            .map_err(|_| format!("{s}: not a count\n{USAGE}"))
    };
    let scale = scale::Scale {
        blobs: count(&args[1])?,
        tags: count(&args[2])?,
        large_mib: args.get(3).map(count).transpose()?.unwrap_or(0),
    };
    let seconds = scale::populate(&PathBuf::from(&args[0]).join("data"), &scale)?;
    eprintln!("loadgen: built in {seconds:.0} s");
    Ok(())
}

fn gc_populate(args: &[String]) -> Result<(), String> {
    let count = |s: &String| s.parse::<usize>().map_err(|_| format!("{s}: not a count"));
    gc::populate(
        &PathBuf::from(&args[0]).join("data"),
        count(&args[1])?,
        count(&args[2])?,
        count(&args[3])?,
    )
}

fn drive(addr: &str, args: &Args) -> Result<(), String> {
    let addr = addr
        .parse()
        .map_err(|e| format!("{addr}: not host:port ({e})"))?;
    let scratch = std::env::temp_dir().join(format!("lain-drive-{}", std::process::id()));
    std::fs::create_dir_all(&scratch).map_err(|e| format!("{}: {e}", scratch.display()))?;
    let target = Target {
        addr,
        verify: true,
        scratch: scratch.clone(),
    };
    // A namespace of its own per run, so runs against one server do not overwrite
    // each other's tags or deduplicate each other's blobs.
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_secs());
    let outcome = Fixture::new(args.sizes.clone(), &scratch, seed).and_then(|fixture| {
        for scenario in scenarios::all() {
            if !args.only.is_empty()
                && !args.only.iter().any(|o| scenario.name.contains(o.as_str()))
            {
                continue;
            }
            let m =
                (scenario.run)(&target, &fixture).map_err(|e| format!("{}: {e}", scenario.name))?;
            let sample = Sample::new(scenario.unit, &m, 0.0);
            println!(
                "{:<45} {:>10.1} {}",
                scenario.name,
                sample.value,
                scenario.unit.label()
            );
        }
        Ok(())
    });
    let _ = std::fs::remove_dir_all(&scratch);
    outcome
}

fn compare(args: Args) -> Result<(), String> {
    let scratch = match &args.scratch {
        Some(dir) => dir.clone(),
        None => std::env::temp_dir().join(format!("lain-bench-{}", std::process::id())),
    };
    std::fs::create_dir_all(&scratch).map_err(|e| format!("{}: {e}", scratch.display()))?;
    let outcome = compare_in(&args, &scratch);
    let _ = std::fs::remove_dir_all(&scratch);
    outcome
}

fn compare_in(args: &Args, scratch: &std::path::Path) -> Result<(), String> {
    eprintln!("loadgen: making and hashing the data");
    let fixture = Fixture::new(args.sizes.clone(), scratch, 0)?;
    let floor = data::sha256_cpu_per_gib(&data::pseudo_random(9, 64 << 20), 16);
    let scenarios = scenarios::all();
    let mut results = Results::new(&args.programs, &args.sizes, args.runs, floor);
    for run in 0..args.runs {
        // Alternate the order of the servers from round to round, so that a drift of
        // the machine's speed over time does not favour one of them.
        let mut order = args.kinds.clone();
        if run % 2 == 1 {
            order.reverse();
        }
        for &kind in &order {
            eprintln!(
                "loadgen: round {} of {}: {}",
                run + 1,
                args.runs,
                kind.label()
            );
            let server = Server::start(kind, &args.programs, scratch)?;
            let target = Target {
                addr: server.addr,
                verify: kind != Kind::Sink,
                scratch: scratch.join(format!("client-{run}-{kind:?}")),
            };
            std::fs::create_dir_all(&target.scratch).map_err(|e| e.to_string())?;
            for (index, scenario) in scenarios.iter().enumerate() {
                if kind == Kind::Sink && !scenario.on_sink {
                    continue;
                }
                if !args.only.is_empty()
                    && !args.only.iter().any(|o| scenario.name.contains(o.as_str()))
                {
                    continue;
                }
                let cpu = server.cpu_seconds();
                let measure = (scenario.run)(&target, &fixture)
                    .map_err(|e| format!("{} against {}: {e}", scenario.name, kind.label()))?;
                let sample = Sample::new(scenario.unit, &measure, server.cpu_seconds() - cpu);
                eprintln!(
                    "loadgen:   {:<45} {:>10.1} {:<5} cpu {:.2} s",
                    scenario.name,
                    sample.value,
                    scenario.unit.label(),
                    sample.cpu
                );
                results.add(kind, index, sample);
            }
            results.memory(kind, &server.peaks);
            let _ = std::fs::remove_dir_all(&target.scratch);
            server.stop();
        }
    }
    let mut report = results.render(&scenarios);
    if let Some(scale) = &args.scale
        && (args.only.is_empty() || args.only.iter().any(|o| o == "scale"))
        && args.kinds.contains(&Kind::Ours)
    {
        report.push_str(&scale::run(
            scale,
            &args.programs,
            &args.sizes,
            args.runs,
            scratch,
        )?);
    }
    print!("{report}");
    Ok(())
}
