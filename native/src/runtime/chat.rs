//! The chat model (a LLaMA, or a LLaVA that also sees images) on its own [`Worker`]: a conversation in,
//! its answer streamed out as text pieces, then the completion.
//!
//! `parallel` conversations are answered at once, in arrival order, each by its own decoder thread over the one
//! copy of the weights (each conversation has its own KV cache): a long answer, or a client that reads slowly,
//! no longer holds every other conversation back, and the next one starts while earlier ones decode (on the CPU
//! backend they share the cores). A full queue answers `overloaded` at once. A client that goes away (its
//! receiver dropped) ends its generation at the next token.

use std::ops::ControlFlow;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use burn::tensor::backend::Backend;
use lens_models::chat_template::{ChatMessage, Content, Part};
use lens_models::generation::GenerationConfig;
use lens_models::identity::{ModelIdentity, identify_files};
use lens_models::llama::pipeline::check_fits;
use lens_models::llama::{FinishReason, LlamaPipeline};
use lens_models::llava::LlavaPipeline;
use tokio::sync::mpsc;

pub use super::conversation::{ChatEvent, ChatPrompt, Finished};
use super::info::{ModelInfo, Role, backend_name};
use super::remote_chat::RemoteChat;
use super::worker::{ModelError, Queue, Stream, Worker, catch_panic};
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
    /// serving with `parallel` decoder threads; at most `queue` conversations wait. Blocks until loaded.
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
                    Ok((pipeline, (limits, info)))
                },
                move |pipeline, queue| serve_parallel(pipeline, queue, parallel),
            )
            .map(|(worker, (limits, info))| ((worker, limits), info))
        })?;
        Ok((Self { provider: Provider::Local(worker), limits }, info))
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
        (Self { provider: Provider::Remote(Arc::new(remote)), limits }, info)
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
        metrics::gauge!("lens_chat_queue_depth").increment(1.0);
        let queued = worker.stream(|events| Request { prompt, config, stop, events }, STREAM_BUFFER, wait).await;
        if queued.is_err() {
            metrics::gauge!("lens_chat_queue_depth").decrement(1.0);
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

/// Runs `parallel` decoders over one pipeline: this thread and `parallel - 1` more, until the queue closes.
fn serve_parallel<B: Backend>(pipeline: Pipeline<B>, queue: Queue<Request>, parallel: usize) {
    let pipeline = Arc::new(pipeline);
    let helpers: Vec<_> = (1..parallel.max(1))
        .filter_map(|i| {
            let (pipeline, queue) = (Arc::clone(&pipeline), queue.clone());
            let spawned =
                std::thread::Builder::new().name(format!("lens-chat-{i}")).spawn(move || serve(&pipeline, &queue));
            if let Err(e) = &spawned {
                tracing::error!(error = %e, "cannot start a chat decoder thread; fewer conversations run at once");
            }
            spawned.ok()
        })
        .collect();
    serve(&pipeline, &queue);
    for helper in helpers {
        let _ = helper.join();
    }
}

fn serve<B: Backend>(pipeline: &Pipeline<B>, queue: &Queue<Request>) {
    while let Some(batch) = queue.next_batch(1, std::time::Duration::ZERO, |_| 1) {
        for request in batch {
            metrics::gauge!("lens_chat_queue_depth").decrement(1.0);
            if request.events.is_cancelled() {
                metrics::counter!("lens_chat_cancelled_total").increment(1);
                continue;
            }
            answer(pipeline, request);
        }
    }
}

/// Generates one answer, streaming its pieces; records time to first token and tokens per second.
fn answer<B: Backend>(pipeline: &Pipeline<B>, request: Request) {
    let Request { prompt, config, stop, events } = request;
    let started = Instant::now();
    let mut first = None;
    let result = catch_panic(|| {
        let mut on_text = |piece: &str| {
            first.get_or_insert_with(|| started.elapsed());
            if events.send(ChatEvent::Text(piece.to_string())) {
                ControlFlow::Continue(())
            } else {
                ControlFlow::Break(())
            }
        };
        // The prompt is checked against the context before `Started`, so that the client's error is a status.
        let begin = |ids: &[u32], context: usize| -> Result<(), ModelError> {
            check_fits(ids.len(), &config, context)?;
            events.send(ChatEvent::Started { prompt_tokens: ids.len() });
            Ok(())
        };
        let completion = match pipeline {
            Pipeline::Llama(p) => {
                let ids = p.encode_chat(&text_messages(&prompt.messages)?)?;
                begin(&ids, p.context_length())?;
                p.generate_stream(&ids, &config, &stop, &mut on_text)?
            }
            Pipeline::Llava(p) => {
                let ids = p.encode_chat(&part_messages(&prompt.messages), prompt.images.len())?;
                begin(&ids, p.context_length())?;
                p.generate_stream(&ids, &prompt.images, &config, &stop, &mut on_text)?
            }
        };
        Ok(completion)
    });
    match result {
        Ok(completion) => {
            let seconds = started.elapsed().as_secs_f64();
            if let Some(ttft) = first {
                metrics::histogram!("lens_chat_time_to_first_token_seconds").record(ttft.as_secs_f64());
            }
            if seconds > 0.0 {
                let rate = completion.token_ids.len() as f64 / seconds;
                metrics::histogram!("lens_chat_tokens_per_second").record(rate);
            }
            metrics::counter!("lens_chat_completion_tokens_total").increment(completion.token_ids.len() as u64);
            if completion.finish_reason == FinishReason::Cancelled {
                metrics::counter!("lens_chat_cancelled_total").increment(1);
            }
            let _ = events.send(ChatEvent::Done(completion.into()));
        }
        Err(error) => events.fail(error),
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
