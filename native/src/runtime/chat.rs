//! The chat model (a LLaMA, or a LLaVA that also sees images) on its own [`Worker`]: a conversation in,
//! its answer streamed out as text pieces, then the completion.
//!
//! Conversations are decoded together (continuous batching): up to `parallel` at once, in arrival order. A
//! new one joins the next step, which runs its prompt (the prefill) in the same forward pass as the others'
//! next tokens; every step gives each conversation one token, and the weights are read once per step however
//! many conversations share it. A conversation
//! leaves when its answer ends. One whose reader is slow waits (its text is held; it skips steps until the
//! reader catches up) without holding back the others; one whose reader went away is dropped before the
//! next step. A full queue answers `overloaded` at once.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use burn::tensor::backend::Backend;
use lens_models::chat_template::{ChatMessage, Content, Part};
use lens_models::generation::GenerationConfig;
use lens_models::identity::{ModelIdentity, identify_files};
use lens_models::llama::{LlamaPipeline, Sequence, Step, step_together};
use lens_models::llava::LlavaPipeline;
use tokio::sync::mpsc;

pub use super::conversation::{ChatEvent, ChatPrompt, Finished};
use super::info::{ModelInfo, Role, backend_name};
use super::remote_chat::RemoteChat;
use super::worker::{ModelError, Offer, Queue, Stream, Worker, catch_panic};
use crate::backend::{DeviceKind, with_backend};

/// Text pieces a client has not read yet before the model waits for it.
const STREAM_BUFFER: usize = 64;

struct Request {
    prompt: ChatPrompt,
    config: GenerationConfig,
    stop: Vec<String>,
    events: Stream<ChatEvent>,
}

/// The loaded checkpoint.
enum Pipeline<B: Backend> {
    Llama(LlamaPipeline<B>),
    Llava(LlavaPipeline<B>),
}

/// What the chat model accepts, known once it is loaded.
#[derive(Debug, Clone, Copy)]
pub struct ChatLimits {
    /// Whether image parts are understood (LLaVA).
    pub images: bool,
    /// Positions of the decoder: prompt and answer together.
    pub context: usize,
}

/// Answers conversations; cheap to clone.
#[derive(Clone)]
pub struct ChatModel {
    provider: Provider,
    /// The model's id: the `model` label of the chat metrics.
    model: String,
    pub limits: ChatLimits,
}

/// Where the answers come from.
#[derive(Clone)]
enum Provider {
    /// A checkpoint on this process's model thread.
    Local(Worker<Request>),
    /// An OpenAI-compatible API.
    Remote(Arc<RemoteChat>),
}

impl ChatModel {
    /// Loads the checkpoint (`dir` of a LLaMA or LLaVA, or a LLaMA `.gguf` file) on a new thread and starts
    /// serving, up to `parallel` conversations decoded together; at most `queue` more wait. Blocks until loaded.
    pub fn start(path: &Path, device: DeviceKind, queue: usize, parallel: usize) -> anyhow::Result<(Self, ModelInfo)> {
        let path = path.to_path_buf();
        let ((worker, limits), info) = with_backend!(device, |B, dev| {
            Worker::spawn(
                "lens-chat",
                queue,
                move || {
                    let context = || format!("cannot load the chat model from {}", path.display());
                    let (pipeline, identity) = load::<B>(&path, &dev).map_err(|e| e.context(context()))?;
                    let limits = match &pipeline {
                        Pipeline::Llama(p) => ChatLimits { images: false, context: p.context_length() },
                        Pipeline::Llava(p) => ChatLimits { images: true, context: p.context_length() },
                    };
                    let image_size = match &pipeline {
                        Pipeline::Llava(p) => p.config.vision_config.image_size,
                        Pipeline::Llama(_) => 0,
                    };
                    let info = ModelInfo {
                        role: Role::Chat,
                        identity,
                        backend: backend_name::<B>(),
                        device: format!("{dev:?}"),
                        image_size,
                        dims: None,
                        max_text_tokens: Some(limits.context),
                    };
                    Ok(((pipeline, info.identity.id.clone()), (limits, info)))
                },
                move |(pipeline, model), queue| serve(pipeline, &model, queue, parallel),
            )
            .map(|(worker, (limits, info))| ((worker, limits), info))
        })?;
        Ok((Self { provider: Provider::Local(worker), model: info.identity.id.clone(), limits }, info))
    }

    /// A chat model behind an OpenAI-compatible API: it is assumed to see images; its context is its own
    /// business (the upstream refuses what does not fit).
    pub fn remote(remote: RemoteChat) -> (Self, ModelInfo) {
        let name = remote.model().to_string();
        let info = ModelInfo {
            role: Role::Chat,
            identity: ModelIdentity { id: name.clone(), name, revision: None },
            backend: "remote",
            device: "upstream".into(),
            image_size: 0,
            dims: None,
            max_text_tokens: None,
        };
        let limits = ChatLimits { images: true, context: usize::MAX };
        (Self { provider: Provider::Remote(Arc::new(remote)), model: info.identity.id.clone(), limits }, info)
    }

    /// Queues a conversation; its answer comes as [`ChatEvent`]s on the receiver (an error ends it).
    /// Dropping the receiver cancels the generation. A full queue: `Overloaded` at once, or with `wait`
    /// (background jobs) a wait for room.
    pub async fn answer(
        &self,
        prompt: ChatPrompt,
        config: GenerationConfig,
        stop: Vec<String>,
        wait: bool,
    ) -> Result<mpsc::Receiver<Result<ChatEvent, ModelError>>, ModelError> {
        let worker = match &self.provider {
            Provider::Local(worker) => worker,
            Provider::Remote(remote) => return remote.answer(prompt, config, stop, wait).await,
        };
        metrics::gauge!("lens_chat_queue_depth", "model" => self.model.clone()).increment(1.0);
        let queued = worker.stream(|events| Request { prompt, config, stop, events }, STREAM_BUFFER, wait).await;
        if queued.is_err() {
            metrics::gauge!("lens_chat_queue_depth", "model" => self.model.clone()).decrement(1.0);
        }
        queued
    }
}

/// The pipeline for `path` and its identity.
fn load<B: Backend>(path: &Path, device: &B::Device) -> anyhow::Result<(Pipeline<B>, ModelIdentity)> {
    if path.is_file() {
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let dir = path.parent().unwrap_or(Path::new("."));
        let identity = identify_files(dir, &[(name, path.to_path_buf())], "chat")?;
        return Ok((Pipeline::Llama(LlamaPipeline::from_gguf_file(path, device)?), identity));
    }
    let identity = identify_files(path, &lens_models::files::safetensors_files(path)?, "chat")?;
    let config: serde_json::Value = serde_json::from_slice(&std::fs::read(path.join("config.json"))?)?;
    let pipeline = if config["model_type"] == "llava" {
        Pipeline::Llava(LlavaPipeline::from_dir(path, device)?)
    } else {
        Pipeline::Llama(LlamaPipeline::from_dir(path, device)?)
    };
    Ok((pipeline, identity))
}

/// Serves conversations, up to `parallel` decoded together, until the queue closes and every answer ended.
/// `model` labels the metrics.
fn serve<B: Backend>(pipeline: Pipeline<B>, model: &str, queue: Queue<Request>, parallel: usize) {
    let pipeline = &pipeline;
    let mut active: Vec<Active<'_, B>> = Vec::new();
    let mut open = true;
    while open || !active.is_empty() {
        let room = parallel.max(1).saturating_sub(active.len());
        if open && room > 0 {
            // Idle: wait for a conversation. Busy: take only those already waiting.
            let arrived =
                if active.is_empty() { queue.next_batch(room, Duration::ZERO, |_| 1) } else { queue.try_take(room) };
            match arrived {
                Some(requests) => active.extend(requests.into_iter().filter_map(|r| admit(pipeline, model, r))),
                None => open = false,
            }
        }
        active.retain_mut(Active::deliver);
        let mut ready: Vec<&mut Active<'_, B>> = active.iter_mut().filter(|a| a.ready()).collect();
        if ready.is_empty() {
            if !active.is_empty() {
                // Every reader is behind: give them a moment rather than spin.
                std::thread::sleep(Duration::from_millis(2));
            }
            continue;
        }
        step(&mut ready);
    }
}

/// A conversation being answered.
struct Active<'p, B: Backend> {
    sequence: Sequence<'p, B>,
    events: Stream<ChatEvent>,
    /// Events its reader had no room for yet, oldest first; it decodes no further until they are taken.
    held: VecDeque<Result<ChatEvent, ModelError>>,
    /// The answer, or an error, is in `held`: the conversation leaves once it is taken.
    ending: bool,
    started: Instant,
    first_text: Option<Duration>,
    /// The `model` label of its metrics.
    model: &'p str,
}

/// Renders and checks the conversation's prompt and announces it; its prefill is part of the next step.
/// `None` when it was refused (its reader has the error) or its reader has gone.
fn admit<'p, B: Backend>(pipeline: &'p Pipeline<B>, model: &'p str, request: Request) -> Option<Active<'p, B>> {
    metrics::gauge!("lens_chat_queue_depth", "model" => model.to_string()).decrement(1.0);
    let Request { prompt, config, stop, events } = request;
    if events.is_cancelled() {
        metrics::counter!("lens_chat_cancelled_total", "model" => model.to_string()).increment(1);
        return None;
    }
    let started = Instant::now();
    // The prompt is checked against the context before `Started`, so that the client's error is a status.
    let sequence = catch_panic(|| match pipeline {
        Pipeline::Llama(p) => {
            let ids = p.encode_chat(&text_messages(&prompt.messages)?)?;
            Ok(p.sequence(&ids, &config, &stop)?)
        }
        Pipeline::Llava(p) => {
            let ids = p.encode_chat(&part_messages(&prompt.messages), prompt.images.len())?;
            Ok(p.sequence(&ids, &prompt.images, &config, &stop)?)
        }
    });
    let sequence = match sequence {
        Ok(sequence) => sequence,
        Err(error) => {
            events.fail(error);
            return None;
        }
    };
    let held = VecDeque::from([Ok(ChatEvent::Started { prompt_tokens: sequence.prompt_tokens() })]);
    Some(Active { sequence, events, held, ending: false, started, first_text: None, model })
}

/// One step for each of `ready` in one forward pass: the prompts of those that just arrived (their prefill),
/// the next token of the others. When the pass fails, each conversation is stepped alone, so that one
/// conversation's failure does not end the others.
fn step<B: Backend>(ready: &mut [&mut Active<'_, B>]) {
    if let Some(first) = ready.first() {
        metrics::histogram!("lens_chat_step_rows", "model" => first.model.to_string()).record(ready.len() as f64);
    }
    let mut rows: Vec<&mut Sequence<'_, B>> = ready.iter_mut().map(|a| &mut a.sequence).collect();
    match catch_panic(|| Ok(step_together(&mut rows)?)) {
        Ok(steps) => ready.iter_mut().zip(steps).for_each(|(a, s)| a.record(s.map_err(ModelError::from))),
        Err(error) if ready.len() == 1 => ready[0].record(Err(error)),
        Err(_) => {
            for a in ready.iter_mut() {
                let alone = catch_panic(|| Ok(step_together(&mut [&mut a.sequence])?.remove(0)?));
                a.record(alone);
            }
        }
    }
}

impl<B: Backend> Active<'_, B> {
    /// Whether it takes part in the next step.
    fn ready(&self) -> bool {
        self.held.is_empty() && !self.ending
    }

    /// Queues what a step gave for the reader; at the end, the completion and its metrics.
    fn record(&mut self, step: Result<Step, ModelError>) {
        let step = match step {
            Ok(step) => step,
            Err(error) => {
                self.held.push_back(Err(error));
                self.ending = true;
                return;
            }
        };
        if !step.text.is_empty() {
            self.first_text.get_or_insert_with(|| self.started.elapsed());
            self.held.push_back(Ok(ChatEvent::Text(step.text)));
        }
        if step.done {
            let completion = self.sequence.completion();
            let seconds = self.started.elapsed().as_secs_f64();
            let model = self.model.to_string();
            if let Some(ttft) = self.first_text {
                metrics::histogram!("lens_chat_time_to_first_token_seconds", "model" => model.clone())
                    .record(ttft.as_secs_f64());
            }
            if seconds > 0.0 {
                let rate = completion.token_ids.len() as f64 / seconds;
                metrics::histogram!("lens_chat_tokens_per_second", "model" => model.clone()).record(rate);
            }
            metrics::counter!("lens_chat_completion_tokens_total", "model" => model)
                .increment(completion.token_ids.len() as u64);
            self.held.push_back(Ok(ChatEvent::Done(completion.into())));
            self.ending = true;
        }
    }

    /// Hands the reader what it has room for. `false` when the conversation is over: answered, or its reader
    /// went away (the generation is cancelled).
    fn deliver(&mut self) -> bool {
        while let Some(event) = self.held.pop_front() {
            match self.events.offer(event) {
                Offer::Taken => {}
                Offer::Full(event) => {
                    self.held.push_front(event);
                    return true;
                }
                Offer::Gone => break,
            }
        }
        if self.events.is_cancelled() && !(self.ending && self.held.is_empty()) {
            let model = self.model.to_string();
            metrics::counter!("lens_chat_cancelled_total", "model" => model.clone()).increment(1);
            metrics::counter!("lens_chat_completion_tokens_total", "model" => model)
                .increment(self.sequence.generated() as u64);
            return false;
        }
        !self.ending
    }
}

/// Messages as LLaMA chat templates take them: text content (a text-only model gets no image parts: the
/// service refuses images before they reach it).
fn text_messages(messages: &[ChatMessage]) -> Result<Vec<ChatMessage>, ModelError> {
    messages
        .iter()
        .map(|m| match &m.content {
            Content::Text(_) => Ok(m.clone()),
            Content::Parts(parts) => {
                let mut text = String::new();
                for part in parts {
                    match part {
                        Part::Text { text: t } => text.push_str(t),
                        Part::Image => {
                            let message = "this chat model takes no images".to_string();
                            return Err(ModelError::Model(lens_models::Error::InvalidInput { message }));
                        }
                    }
                }
                Ok(ChatMessage::text(&m.role, text))
            }
        })
        .collect()
}

/// Messages as LLaVA's processor templates take them: content parts, text as one text part.
fn part_messages(messages: &[ChatMessage]) -> Vec<ChatMessage> {
    messages
        .iter()
        .map(|m| match &m.content {
            Content::Parts(_) => m.clone(),
            Content::Text(text) => {
                ChatMessage { role: m.role.clone(), content: Content::Parts(vec![Part::Text { text: text.clone() }]) }
            }
        })
        .collect()
}
