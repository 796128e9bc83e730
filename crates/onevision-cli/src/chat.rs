//! `onevision chat`: a multi-turn conversation on stdin. Each line is a user message; commands
//! attach media to the next message or clear the history. Answers stream to stdout as they are
//! generated; status lines and errors go to stderr, so `stdout` holds only the answers.

use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Args;
use onevision_engine::generate::run_request;
use onevision_engine::{
    Event, Finish, GenRequest, ImageInput, Pipeline, Request, SamplingParams, StopRules, VideoInput,
};
use onevision_processor::video::{load_video, VideoSource};
use onevision_processor::{decode_file, DecodeLimits, Message, Part, Role};

use crate::checkpoint::ModelArgs;

#[derive(Args)]
pub struct ChatArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// A system message at the start of the conversation (kept by /reset). None by default, as
    /// transformers; the original LLaVA-OneVision prompts use "You are a helpful assistant."
    #[arg(long, value_name = "TEXT")]
    system: Option<String>,
    /// The most tokens to generate for one answer.
    #[arg(long, default_value_t = 512, value_name = "N")]
    max_new_tokens: usize,
    /// Sampling temperature: 0 is greedy decoding (the most likely token every step, the same
    /// answer every time); higher values give more varied answers. 0 to 2.
    #[arg(long, default_value_t = 0.0, value_name = "T")]
    temperature: f32,
    /// Nucleus sampling: draw only from the smallest set of most likely tokens whose
    /// probabilities reach P (1 = no cut). Applies when --temperature > 0.
    #[arg(long, default_value_t = 1.0, value_name = "P")]
    top_p: f32,
    /// Draw only from the K most likely tokens (default: no cut). Applies when
    /// --temperature > 0.
    #[arg(long, value_name = "K")]
    top_k: Option<usize>,
    /// Seed of the sampler: the same seed, conversation and checkpoint give the same answers.
    /// Default: a fresh random seed for every answer.
    #[arg(long, value_name = "S")]
    seed: Option<u64>,
    /// Frames sampled from a video attached with `/video PATH` when the command names no count.
    #[arg(long, default_value_t = 32, value_name = "N")]
    frames: usize,
    /// Reject images and video frames with more pixels than this (checked before decoding).
    #[arg(long, default_value_t = DecodeLimits::DEFAULT_MAX_PIXELS, value_name = "N")]
    max_pixels: u64,
}

/// The REPL's commands, for the banner, `/help` and `onevision chat --help`.
pub const COMMANDS: &str = concat!(
    "  TEXT                  send a user message (// at the start sends a line beginning with /)\n",
    "  /image PATH           attach an image to the next message (repeat for several)\n",
    "  /video PATH [FRAMES]  attach a video (file, animated GIF or frame directory) to the next message\n",
    "  /reset                clear the conversation (the --system message stays)\n",
    "  /help                 list the commands\n",
    "  /quit                 exit (so does end of input, Ctrl-D)",
);

/// One line of input, parsed.
#[derive(Debug, PartialEq)]
enum Input {
    Message(String),
    Image(PathBuf),
    Video {
        path: PathBuf,
        frames: Option<usize>,
    },
    Reset,
    Help,
    Quit,
    Empty,
    /// A command that could not be parsed: what to tell the user.
    Invalid(String),
}

fn parse_line(line: &str) -> Input {
    let line = line.trim_end_matches(['\n', '\r']);
    if line.trim().is_empty() {
        return Input::Empty;
    }
    if let Some(text) = line.strip_prefix("//") {
        return Input::Message(format!("/{text}"));
    }
    let Some(command) = line.strip_prefix('/') else {
        return Input::Message(line.to_string());
    };
    let (name, rest) = command
        .split_once(char::is_whitespace)
        .map_or((command, ""), |(n, r)| (n, r.trim()));
    match name {
        "quit" | "exit" | "q" => Input::Quit,
        "reset" | "clear" => Input::Reset,
        "help" | "?" => Input::Help,
        "image" if rest.is_empty() => Input::Invalid("/image needs a PATH".into()),
        "image" => Input::Image(PathBuf::from(rest)),
        "video" if rest.is_empty() => Input::Invalid("/video needs a PATH".into()),
        "video" => {
            // A path may hold spaces: the last word is a frame count only when it parses as
            // one and the whole rest is not an existing path.
            match rest.rsplit_once(char::is_whitespace) {
                Some((path, n)) if !Path::new(rest).exists() => match n.parse::<usize>() {
                    Ok(0) => Input::Invalid("/video needs at least 1 frame".into()),
                    Ok(frames) => Input::Video {
                        path: PathBuf::from(path.trim()),
                        frames: Some(frames),
                    },
                    Err(_) => Input::Video {
                        path: PathBuf::from(rest),
                        frames: None,
                    },
                },
                _ => Input::Video {
                    path: PathBuf::from(rest),
                    frames: None,
                },
            }
        }
        _ => Input::Invalid(format!(
            "unknown command /{name}; /help lists the commands (start a message with // to send \
             a line beginning with /)"
        )),
    }
}

/// The conversation so far, kept as the engine request it becomes: committed turns with their
/// media, plus media attached for the next message.
struct Conversation {
    gen: GenRequest,
    system: Option<String>,
    pending_images: Vec<ImageInput>,
    pending_videos: Vec<VideoInput>,
}

impl Conversation {
    fn new(system: Option<String>, sampling: SamplingParams, stop: StopRules) -> Self {
        let mut this = Self {
            gen: GenRequest {
                request: Request {
                    messages: vec![],
                    images: vec![],
                    videos: vec![],
                },
                sampling,
                stop,
                logprobs: None,
            },
            system,
            pending_images: vec![],
            pending_videos: vec![],
        };
        this.reset();
        this
    }

    fn reset(&mut self) {
        let r = &mut self.gen.request;
        r.messages.clear();
        r.images.clear();
        r.videos.clear();
        if let Some(s) = &self.system {
            r.messages.push(Message::text(Role::System, s.clone()));
        }
        self.pending_images.clear();
        self.pending_videos.clear();
    }

    /// Adds the user's message with the pending media (images, then videos, then the text,
    /// as `generate` orders them). Returns how to undo it.
    fn push_user(&mut self, text: String) -> Mark {
        let r = &mut self.gen.request;
        let mark = Mark {
            messages: r.messages.len(),
            images: r.images.len(),
            videos: r.videos.len(),
        };
        let mut parts: Vec<Part> = self.pending_images.iter().map(|_| Part::Image).collect();
        parts.extend(self.pending_videos.iter().map(|_| Part::Video));
        parts.push(Part::Text(text));
        r.messages.push(Message::new(Role::User, parts));
        r.images.append(&mut self.pending_images);
        r.videos.append(&mut self.pending_videos);
        mark
    }

    /// Drops everything added since `mark` (a turn that failed).
    fn undo(&mut self, mark: Mark) {
        let r = &mut self.gen.request;
        r.messages.truncate(mark.messages);
        r.images.truncate(mark.images);
        r.videos.truncate(mark.videos);
    }
}

struct Mark {
    messages: usize,
    images: usize,
    videos: usize,
}

fn check(args: &ChatArgs) -> Result<()> {
    if !(args.temperature.is_finite() && (0.0..=2.0).contains(&args.temperature)) {
        bail!(
            "--temperature must be between 0 and 2, got {}",
            args.temperature
        );
    }
    if !(args.top_p > 0.0 && args.top_p <= 1.0) {
        bail!("--top-p must be in (0, 1], got {}", args.top_p);
    }
    if args.top_k == Some(0) {
        bail!("--top-k must be at least 1");
    }
    if args.max_new_tokens == 0 {
        bail!("--max-new-tokens must be at least 1");
    }
    if args.frames == 0 {
        bail!("--frames must be at least 1");
    }
    Ok(())
}

pub fn run(args: ChatArgs) -> Result<()> {
    check(&args)?;
    let (model, mut pipeline) = args.model.load()?;
    pipeline.limits = DecodeLimits {
        max_pixels: args.max_pixels,
    };
    let sampling = SamplingParams {
        temperature: args.temperature,
        top_k: args.top_k,
        top_p: args.top_p,
        seed: args.seed,
        ..SamplingParams::default()
    };
    let stop = StopRules {
        max_new_tokens: args.max_new_tokens,
        ..StopRules::default()
    };
    let mut chat = Conversation::new(args.system.clone(), sampling, stop);

    let interactive = std::io::stdin().is_terminal();
    if interactive {
        eprintln!("chatting with {}; commands:\n{COMMANDS}", model.served_name);
    }
    let mut stdin = std::io::stdin().lock();
    let mut line = Vec::new();
    loop {
        if interactive {
            print!("> ");
            let _ = std::io::stdout().flush();
        }
        line.clear();
        if stdin
            .read_until(b'\n', &mut line)
            .context("reading stdin")?
            == 0
        {
            break;
        }
        match parse_line(&String::from_utf8_lossy(&line)) {
            Input::Quit => break,
            Input::Empty => {}
            Input::Help => eprintln!("{COMMANDS}"),
            Input::Reset => {
                chat.reset();
                eprintln!("[conversation cleared]");
            }
            Input::Invalid(msg) => eprintln!("error: {msg}"),
            Input::Image(path) => match decode_file(&path, &pipeline.limits) {
                Ok(img) => {
                    eprintln!(
                        "[image {} ({}x{}) attached to the next message]",
                        path.display(),
                        img.width,
                        img.height
                    );
                    chat.pending_images.push(ImageInput::Decoded(img));
                }
                Err(e) => eprintln!("error: {e}"),
            },
            Input::Video { path, frames } => {
                let n = frames.unwrap_or(args.frames);
                match load_video(VideoSource::Path(&path), n, &pipeline.limits) {
                    Ok(video) => {
                        eprintln!(
                            "[video {} ({} of {} frames) attached to the next message]",
                            path.display(),
                            video.frames.len(),
                            video.total_frames
                        );
                        chat.pending_videos.push(VideoInput::Decoded(video.frames));
                    }
                    Err(e) => eprintln!("error: {e}"),
                }
            }
            Input::Message(text) => {
                if !answer(&pipeline, &mut chat, text)? {
                    break;
                }
            }
        }
    }
    Ok(())
}

/// Runs one turn, streaming the answer to stdout. On success the user message and the answer
/// join the history; on failure the error is printed and the history is left as it was (the
/// attached media are dropped). Returns false when stdout is gone and the chat should end.
fn answer(pipeline: &Pipeline, chat: &mut Conversation, text: String) -> Result<bool> {
    let mark = chat.push_user(text);
    let stdout = std::io::stdout();
    let mut stdout_gone = false;
    let mut outcome = None;
    run_request(pipeline, &chat.gen, &mut |event| {
        match event {
            Event::Started { .. } => {}
            Event::Delta { text, .. } => {
                let mut out = stdout.lock();
                if out
                    .write_all(text.as_bytes())
                    .and_then(|_| out.flush())
                    .is_err()
                {
                    // A closed pipe: stop generating.
                    stdout_gone = true;
                    return false;
                }
            }
            Event::Done {
                finish,
                usage,
                timings,
                text,
                ..
            } => outcome = Some(Ok((finish, usage, timings, text))),
            Event::Failed(e) => outcome = Some(Err(e)),
        }
        true
    });
    if stdout_gone {
        return Ok(false);
    }
    // One answer per line on stdout, even an empty one.
    let _ = writeln!(stdout.lock());
    match outcome {
        Some(Ok((finish, usage, timings, text))) => {
            let note = match finish {
                Finish::Length => ", cut at --max-new-tokens",
                _ => "",
            };
            eprintln!(
                "[{} tokens{note}; prompt {} tokens ({} media); {:.1} tok/s, total {:.0} ms]",
                usage.completion_tokens,
                usage.prompt_tokens,
                usage.media_tokens,
                timings.decode_tokens_per_s,
                timings.total_ms
            );
            chat.gen
                .request
                .messages
                .push(Message::text(Role::Assistant, text));
            Ok(true)
        }
        Some(Err(e)) => {
            let had_media = chat.gen.request.images.len() > mark.images
                || chat.gen.request.videos.len() > mark.videos;
            chat.undo(mark);
            eprintln!("error: {e}");
            if had_media {
                eprintln!(
                    "[the message and its attachments were dropped; attach them again to retry]"
                );
            } else {
                eprintln!("[the message was dropped]");
            }
            Ok(true)
        }
        None => {
            chat.undo(mark);
            bail!("the engine ended the request without reporting an outcome")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_parse_into_commands_and_messages() {
        assert_eq!(
            parse_line("hello there\n"),
            Input::Message("hello there".into())
        );
        assert_eq!(parse_line("  \r\n"), Input::Empty);
        assert_eq!(
            parse_line("//etc/passwd?"),
            Input::Message("/etc/passwd?".into())
        );
        assert_eq!(parse_line("/quit"), Input::Quit);
        assert_eq!(parse_line("/reset\r\n"), Input::Reset);
        assert_eq!(
            parse_line("/image my photo.png"),
            Input::Image("my photo.png".into())
        );
        assert_eq!(
            parse_line("/video clip.mp4 8"),
            Input::Video {
                path: "clip.mp4".into(),
                frames: Some(8)
            }
        );
        assert_eq!(
            parse_line("/video my clip.mp4"),
            Input::Video {
                path: "my clip.mp4".into(),
                frames: None
            }
        );
        assert!(matches!(parse_line("/image"), Input::Invalid(_)));
        assert!(matches!(parse_line("/video x.mp4 0"), Input::Invalid(_)));
        assert!(matches!(parse_line("/frobnicate"), Input::Invalid(m) if m.contains("/help")));
    }
}
