//! `onevision eval`: score a model (in-process or behind an OpenAI-compatible endpoint) on
//! lmms-eval's tasks with lmms-eval 0.2.1's protocol, from local copies of the datasets;
//! `onevision eval score` recomputes the scores from samples files; `onevision eval list`
//! names the tasks. See docs/EVALUATION.md.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use onevision_eval::backend::local::LocalBackend;
use onevision_eval::backend::openai::OpenAiBackend;
use onevision_eval::backend::Backend;
use onevision_eval::run::{self, Report, RunOptions, TaskSummary};
use onevision_eval::task::Task;
use onevision_eval::{dataset, tasks};

use crate::checkpoint::ModelArgs;

#[derive(Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct EvalArgs {
    #[command(subcommand)]
    action: Option<Action>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Subcommand)]
enum Action {
    /// Recompute the scores from samples files (no model): each document's stored answer is
    /// filtered and scored again, and the aggregates printed (and written with --output).
    Score(ScoreArgs),
    /// List the tasks and groups, with the dataset each reads.
    List,
}

#[derive(Args)]
struct ScoreArgs {
    /// Tasks or groups, comma separated (as for `onevision eval --tasks`).
    #[arg(long, value_delimiter = ',', required = true)]
    tasks: Vec<String>,
    /// The directory with samples_<task>.jsonl files (an `onevision eval --output`).
    #[arg(long, value_name = "DIR")]
    samples_dir: PathBuf,
    /// Write the recomputed results.json here.
    #[arg(long, value_name = "FILE")]
    output: Option<PathBuf>,
}

#[derive(Args)]
struct RunArgs {
    /// Tasks or groups, comma separated (`onevision eval list` names them), or your own data:
    /// a .jsonl task file or a LLaVA .json sample list (see docs/EVALUATION.md).
    #[arg(long, value_delimiter = ',')]
    tasks: Vec<String>,
    /// Where results.json and samples_<task>.jsonl go. Rerunning with the same --output
    /// resumes: documents already in a samples file are not run again.
    #[arg(long, value_name = "DIR")]
    output: Option<PathBuf>,
    /// The checkpoint to evaluate in-process (a directory or a Hugging Face repo id); without
    /// it and without --endpoint, the built-in onevision-nano.
    #[arg(long, value_name = "DIR|ORG/NAME", conflicts_with = "endpoint")]
    model: Option<String>,
    /// Branch, tag or commit of a --model repo id (default: main).
    #[arg(long, value_name = "REV", requires = "model")]
    revision: Option<String>,
    /// In-process compute dtype.
    #[arg(long, default_value = "f32", value_name = "f32|bf16|f16", value_parser = crate::checkpoint::parse_dtype)]
    dtype: onevision_nn::ComputeDType,
    /// An OpenAI-compatible server (onevision serve, vLLM, SGLang): its base URL, e.g.
    /// http://localhost:8000. Give it several times for replicas; documents are spread across
    /// them.
    #[arg(long, value_name = "URL")]
    endpoint: Vec<String>,
    /// Sent as `Authorization: Bearer KEY`.
    #[arg(
        long,
        value_name = "KEY",
        env = "ONEVISION_API_KEY",
        hide_env_values = true
    )]
    api_key: Option<String>,
    /// The `model` field of the requests (default: the first id of the server's /v1/models).
    #[arg(long, value_name = "NAME")]
    served_model: Option<String>,
    /// Requests in flight per endpoint.
    #[arg(long, default_value_t = 1, value_name = "N")]
    concurrency: usize,
    /// Seconds before a request to an endpoint is abandoned (and retried).
    #[arg(long, default_value_t = 600.0, value_name = "SECONDS")]
    timeout: f64,
    /// Datasets laid out as DIR/<org>/<name>/ (the Hub repo's files), looked in before the
    /// Hugging Face cache.
    #[arg(long, value_name = "DIR")]
    data: Option<PathBuf>,
    /// The Hugging Face hub cache (default: HF_HUB_CACHE, else $HF_HOME/hub, else
    /// ~/.cache/huggingface/hub).
    #[arg(long, value_name = "DIR")]
    hf_cache: Option<PathBuf>,
    /// Where the video tasks' files are (each task's layout below it: docs/EVALUATION.md).
    /// `TASK=DIR` (or `GROUP=DIR`) for one task; give it once per task.
    #[arg(long, value_name = "[TASK=]DIR")]
    video_dir: Vec<String>,
    /// Evaluate only this many documents per task (after --offset).
    #[arg(long, value_name = "N")]
    limit: Option<usize>,
    /// Skip this many documents per task.
    #[arg(long, default_value_t = 0, value_name = "N")]
    offset: usize,
    /// Your own data (a .jsonl/.json --tasks file): relative image paths are relative to this
    /// folder (as `onevision train --image-folder`), else to the file's folder. Relative video
    /// paths go against a plain `--video-dir DIR`.
    #[arg(long, value_name = "DIR")]
    image_folder: Option<PathBuf>,
    /// No progress bar.
    #[arg(long)]
    no_progress: bool,
}

pub fn run(args: EvalArgs) -> Result<ExitCode> {
    match args.action {
        Some(Action::List) => {
            list();
            Ok(ExitCode::SUCCESS)
        }
        Some(Action::Score(a)) => score(a),
        None => evaluate(args.run),
    }
}

fn list() {
    let rows: Vec<[String; 5]> = tasks::all()
        .iter()
        .map(|t| {
            let d = t.dataset();
            let name = match t.group() {
                Some(g) => format!("{} ({g})", t.name()),
                None => t.name().to_string(),
            };
            let repo = match &d.config {
                Some(c) => format!("{} [{c}]", d.repo),
                None => d.repo.clone(),
            };
            let metrics: Vec<String> = t
                .metrics()
                .iter()
                .map(|m| format!("{},{}", m.name, t.filter_name()))
                .collect();
            [
                name,
                repo,
                d.split,
                t.max_new_tokens().to_string(),
                metrics.join(" "),
            ]
        })
        .collect();
    let header = [
        "task (group)",
        "dataset [config]",
        "split",
        "max_new_tokens",
        "metrics",
    ];
    let width = |i: usize| {
        rows.iter()
            .map(|r| r[i].chars().count())
            .chain([header[i].len()])
            .max()
            .unwrap_or(0)
    };
    let (w0, w1, w2, w3) = (width(0), width(1), width(2), width(3));
    println!(
        "{:<w0$}  {:<w1$}  {:<w2$}  {:>w3$}  {}",
        header[0], header[1], header[2], header[3], header[4]
    );
    for [name, repo, split, max, metrics] in rows {
        println!("{name:<w0$}  {repo:<w1$}  {split:<w2$}  {max:>w3$}  {metrics}");
    }
}

/// Task names, groups, and own-data files.
fn resolve_tasks(
    names: &[String],
    image_folder: Option<&Path>,
    video_dir: Option<&Path>,
) -> Result<Vec<Box<dyn Task>>> {
    if names.is_empty() {
        bail!("--tasks is required (e.g. --tasks ai2d,mme; `onevision eval list` names them)");
    }
    let mut out: Vec<Box<dyn Task>> = vec![];
    for n in names {
        let p = Path::new(n);
        let is_file = n.ends_with(".jsonl") || n.ends_with(".json");
        if is_file && !p.is_file() {
            bail!("--tasks {n}: no such file (a .jsonl/.json task file of your own data; see docs/EVALUATION.md)");
        }
        if is_file {
            out.extend(tasks::custom::from_file_with(p, image_folder, video_dir)?);
        } else {
            out.extend(tasks::find(n)?);
        }
    }
    let mut seen = std::collections::HashSet::new();
    out.retain(|t| seen.insert(t.name().to_string()));
    Ok(out)
}

fn backend(a: &RunArgs) -> Result<Box<dyn Backend>> {
    match (&a.model, a.endpoint.is_empty()) {
        (model, true) => {
            let margs = ModelArgs {
                model: model.clone(),
                revision: a.revision.clone(),
                dtype: a.dtype,
                quantize: None,
            };
            let (resolved, pipeline) = margs.load()?;
            Ok(Box::new(LocalBackend::from_pipeline(
                pipeline,
                &resolved.dir,
                a.dtype,
            )))
        }
        (None, false) => {
            if a.concurrency == 0 {
                bail!("--concurrency must be at least 1");
            }
            Ok(Box::new(
                OpenAiBackend::new(
                    a.endpoint.clone(),
                    a.api_key.clone(),
                    a.served_model.clone(),
                    a.concurrency,
                    Duration::from_secs_f64(a.timeout.max(0.001)),
                )
                .context("connecting to the endpoint")?,
            ))
        }
        (Some(_), false) => bail!("give either --model or --endpoint, not both"),
    }
}

fn task_line(s: &TaskSummary) {
    let speed = s
        .docs_per_second()
        .map(|x| format!("{x:.2} docs/s"))
        .unwrap_or_else(|| "-".into());
    let mut line = format!(
        "{}: {} documents ({} generated, {} from the samples file), {} failed, {speed}",
        s.task, s.effective, s.generated, s.resumed, s.failed
    );
    for e in &s.errors {
        line.push_str(&format!("\n  {}: not scored: {e}", s.task));
    }
    if s.bad_lines > 0 {
        line.push_str(&format!(
            ", {} unreadable samples lines dropped",
            s.bad_lines
        ));
    }
    eprintln!("{line}");
}

fn print_report(tasks: &[Box<dyn Task>], report: &Report) {
    let mut rows = vec![];
    for s in &report.summaries {
        if let Some(t) = tasks.iter().find(|t| t.name() == s.task) {
            rows.push((
                s.task.clone(),
                t.version(),
                t.filter_name().to_string(),
                s.scores.clone(),
            ));
        }
    }
    for (g, scores) in &report.groups {
        rows.push((
            g.clone(),
            serde_json::Value::from("N/A"),
            String::new(),
            scores.clone(),
        ));
    }
    print!("{}", onevision_eval::results::table(&rows));
    let failed: usize = report.summaries.iter().map(|s| s.failed).sum();
    if failed > 0 {
        println!("\n{failed} documents failed (scored as wrong); the reasons are in the samples files' `failed` field.");
    }
}

/// `--video-dir DIR` and `--video-dir TASK=DIR`.
fn video_dirs(
    args: &[String],
) -> Result<(Option<PathBuf>, std::collections::BTreeMap<String, PathBuf>)> {
    let mut common = None;
    let mut per_task = std::collections::BTreeMap::new();
    for a in args {
        match a.split_once('=') {
            Some((task, dir)) if !task.is_empty() && !task.contains('/') => {
                let known = tasks::known_names();
                if !known.iter().any(|k| k == task) {
                    bail!(
                        "--video-dir {a}: unknown task `{task}`; known tasks: {}",
                        known.join(", ")
                    );
                }
                per_task.insert(task.to_string(), PathBuf::from(dir));
            }
            _ => {
                if common.replace(PathBuf::from(a)).is_some() {
                    bail!("--video-dir DIR given twice; use --video-dir TASK=DIR for per-task folders");
                }
            }
        }
    }
    Ok((common, per_task))
}

fn evaluate(a: RunArgs) -> Result<ExitCode> {
    let Some(output) = a.output.clone() else {
        bail!("--output DIR is required (results.json and the samples files go there)");
    };
    let (video_dir, video_dirs) = video_dirs(&a.video_dir)?;
    let tasks = resolve_tasks(&a.tasks, a.image_folder.as_deref(), video_dir.as_deref())?;
    let backend = backend(&a)?;
    let opts = RunOptions {
        output: output.clone(),
        data_dir: a.data.clone(),
        hf_cache: a.hf_cache.clone().unwrap_or_else(dataset::default_hf_cache),
        video_dir,
        video_dirs,
        offset: a.offset,
        limit: a.limit,
        progress: !a.no_progress && std::io::stderr().is_terminal(),
    };
    let report = run::run(&tasks, backend.as_ref(), &opts, &mut task_line)?;
    print_report(&tasks, &report);
    eprintln!("results: {}", output.join("results.json").display());
    Ok(ExitCode::SUCCESS)
}

fn score(a: ScoreArgs) -> Result<ExitCode> {
    let tasks = resolve_tasks(&a.tasks, None, None)?;
    let report = run::score_dir(&tasks, &a.samples_dir, a.output.as_deref())?;
    for s in &report.summaries {
        task_line(s);
    }
    print_report(&tasks, &report);
    Ok(ExitCode::SUCCESS)
}
