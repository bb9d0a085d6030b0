//! One model on its own thread behind a bounded queue. The recipe every model role shares: the model
//! is loaded *on* its thread (so a backend bound to a thread stays there, and a load error comes back
//! to the caller), requests queue in a bounded channel (a full queue answers `overloaded` instead of
//! growing latency without bound), the thread gathers what queued while it was busy into a batch, and
//! each request gets its answer as one reply ([`Once`]) or as a stream of items ([`Stream`]), which
//! is cancelled when its receiver is dropped. A panicking model call fails its requests, not the thread.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TryRecvError, TrySendError};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

/// Requests waiting for a model by default; past this, HTTP requests get `overloaded`.
pub const QUEUE_CAPACITY: usize = 1024;

/// Why a model gave no answer.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// The queue is full: retry later.
    #[error("the model queue is full; retry later")]
    Overloaded,
    /// The model thread is gone (it panicked while loading, or the server is stopping).
    #[error("the model thread has stopped")]
    Stopped,
    /// The model refused the input or failed.
    #[error(transparent)]
    Model(#[from] lens_models::Error),
    /// The model code panicked (a bug); the thread lives on.
    #[error("the model panicked: {0}")]
    Panicked(String),
    /// The remote chat provider refused the request or failed.
    #[error("the chat provider failed: {0}")]
    Upstream(String),
    /// The remote chat provider did not answer within this many seconds.
    #[error("the chat provider did not answer within {0} s")]
    UpstreamTimeout(u64),
}

/// The sending side of a model thread's queue. Cheap to clone.
pub struct Worker<R> {
    tx: SyncSender<R>,
}

impl<R> Clone for Worker<R> {
    fn clone(&self) -> Self {
        Self { tx: self.tx.clone() }
    }
}

/// The model thread's side of the queue.
pub struct Queue<R> {
    /// Shared by the threads that serve one model (the chat model's decoders); one waits at a time.
    rx: Arc<Mutex<Receiver<R>>>,
}

impl<R> Clone for Queue<R> {
    fn clone(&self) -> Self {
        Self { rx: Arc::clone(&self.rx) }
    }
}

impl<R: Send + 'static> Worker<R> {
    /// Starts a thread named `name` that runs `load` and then `serve` with the loaded model and the
    /// queue, until every [`Worker`] clone is dropped. Blocks until `load` returns: its error, or the
    /// thread's panic, comes back here; on success, with what `load` reported beside the model.
    pub fn spawn<M, I>(
        name: &str,
        capacity: usize,
        load: impl FnOnce() -> anyhow::Result<(M, I)> + Send + 'static,
        serve: impl FnOnce(M, Queue<R>) + Send + 'static,
    ) -> anyhow::Result<(Self, I)>
    where
        I: Send + 'static,
    {
        let (tx, rx) = std::sync::mpsc::sync_channel(capacity);
        let (loaded_tx, loaded_rx) = std::sync::mpsc::channel::<anyhow::Result<I>>();
        std::thread::Builder::new().name(name.to_string()).spawn(move || match load() {
            Ok((model, info)) => {
                let _ = loaded_tx.send(Ok(info));
                serve(model, Queue { rx: Arc::new(Mutex::new(rx)) });
            }
            Err(e) => {
                let _ = loaded_tx.send(Err(e));
            }
        })?;
        let info =
            loaded_rx.recv().map_err(|_| anyhow::anyhow!("the {name} thread stopped while loading its model"))??;
        Ok((Self { tx }, info))
    }

    /// Queues a request. Without `wait`, a full queue is [`ModelError::Overloaded`] at once (HTTP
    /// requests: fail fast); with it, waits for room (background jobs: a busy model is no reason to fail).
    pub async fn submit(&self, request: R, wait: bool) -> Result<(), ModelError> {
        if !wait {
            return match self.tx.try_send(request) {
                Ok(()) => Ok(()),
                Err(TrySendError::Full(_)) => Err(ModelError::Overloaded),
                Err(TrySendError::Disconnected(_)) => Err(ModelError::Stopped),
            };
        }
        let tx = self.tx.clone();
        tokio::task::spawn_blocking(move || tx.send(request))
            .await
            .map_err(|_| ModelError::Stopped)?
            .map_err(|_| ModelError::Stopped)
    }

    /// Queues the request `make` builds around a one-shot reply and awaits the answer.
    pub async fn call<O>(&self, make: impl FnOnce(Once<O>) -> R, wait: bool) -> Result<O, ModelError> {
        let (reply, rx) = oneshot::channel();
        self.submit(make(Once(reply)), wait).await?;
        rx.await.unwrap_or(Err(ModelError::Stopped))
    }

    /// Queues the request `make` builds around a stream of at most `buffer` unread items and returns
    /// the receiving end. Dropping it cancels the request: the model sees [`Stream::send`] fail.
    pub async fn stream<O>(
        &self,
        make: impl FnOnce(Stream<O>) -> R,
        buffer: usize,
        wait: bool,
    ) -> Result<mpsc::Receiver<Result<O, ModelError>>, ModelError> {
        let (tx, rx) = mpsc::channel(buffer.max(1));
        self.submit(make(Stream(tx)), wait).await?;
        Ok(rx)
    }
}

impl<R> Queue<R> {
    /// The next batch: blocks for a first request, then takes those already queued (and, with `wait`
    /// > 0, those arriving within it) until `max_items` inputs. `None` when every sender is gone.
    pub fn next_batch(&self, max_items: usize, wait: Duration, items: impl Fn(&R) -> usize) -> Option<Vec<R>> {
        let rx = self.rx.lock().unwrap_or_else(PoisonError::into_inner);
        let first = rx.recv().ok()?;
        let mut count = items(&first);
        let mut batch = vec![first];
        let deadline = Instant::now() + wait;
        while count < max_items {
            match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(next) => {
                    count += items(&next);
                    batch.push(next);
                }
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => break,
            }
        }
        Some(batch)
    }
}

impl<R> Queue<R> {
    /// Up to `max` requests already queued, without waiting; `None` when none is queued and every sender is
    /// gone.
    pub fn try_take(&self, max: usize) -> Option<Vec<R>> {
        let rx = self.rx.lock().unwrap_or_else(PoisonError::into_inner);
        let mut taken = Vec::new();
        while taken.len() < max {
            match rx.try_recv() {
                Ok(request) => taken.push(request),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) if taken.is_empty() => return None,
                Err(TryRecvError::Disconnected) => break,
            }
        }
        Some(taken)
    }
}

/// Where one request's single answer goes.
pub struct Once<O>(oneshot::Sender<Result<O, ModelError>>);

impl<O> Once<O> {
    pub fn send(self, answer: Result<O, ModelError>) {
        // The requester may have gone (a client that disconnected): nothing to do then.
        let _ = self.0.send(answer);
    }

    /// The requester stopped waiting: its work can be skipped.
    pub fn is_cancelled(&self) -> bool {
        self.0.is_closed()
    }
}

/// Where one request's items go, as they are produced.
pub struct Stream<O>(mpsc::Sender<Result<O, ModelError>>);

impl<O> Stream<O> {
    /// Ends the stream with an error.
    pub fn fail(self, error: ModelError) {
        let _ = self.0.blocking_send(Err(error));
    }

    pub fn is_cancelled(&self) -> bool {
        self.0.is_closed()
    }

    /// Hands over one item, or the error that ends the stream, without waiting: one thread serving many
    /// streams must not stop for the slowest reader.
    pub fn offer(&self, item: Result<O, ModelError>) -> Offer<Result<O, ModelError>> {
        match self.0.try_send(item) {
            Ok(()) => Offer::Taken,
            Err(mpsc::error::TrySendError::Full(item)) => Offer::Full(item),
            Err(mpsc::error::TrySendError::Closed(_)) => Offer::Gone,
        }
    }
}

/// What became of an item offered to a stream.
#[derive(Debug)]
pub enum Offer<T> {
    Taken,
    /// The receiver has `buffer` unread items: here is the item back, offer it again later.
    Full(T),
    /// The receiver went away.
    Gone,
}

/// Runs `f`, turning a panic into [`ModelError::Panicked`] with its message.
pub fn catch_panic<T>(f: impl FnOnce() -> Result<T, ModelError>) -> Result<T, ModelError> {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|payload| {
        let message = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "(no message)".into());
        Err(ModelError::Panicked(message))
    })
}

/// Runs the inputs of several requests as one model call and hands each request its rows; if the
/// joint call fails, each request runs alone, so one bad input cannot fail its neighbours. Requests
/// whose requester has gone are skipped. Returns the number of inputs run.
pub fn run_joint<I, O>(
    requests: Vec<(Vec<I>, Once<Vec<O>>)>,
    run: impl Fn(&[I]) -> lens_models::Result<Vec<O>>,
) -> usize {
    let requests: Vec<_> = requests.into_iter().filter(|(_, reply)| !reply.is_cancelled()).collect();
    if requests.is_empty() {
        return 0;
    }
    let mut inputs = Vec::new();
    let mut parts = Vec::with_capacity(requests.len());
    for (items, reply) in requests {
        let start = inputs.len();
        inputs.extend(items);
        parts.push((reply, start, inputs.len()));
    }
    let call = |inputs: &[I]| -> Result<Vec<O>, ModelError> {
        let rows = catch_panic(|| run(inputs).map_err(ModelError::Model))?;
        if rows.len() != inputs.len() {
            return Err(ModelError::Panicked(format!("{} outputs for {} inputs", rows.len(), inputs.len())));
        }
        Ok(rows)
    };
    match call(&inputs) {
        Ok(mut rows) => {
            // Split from the back so each reply takes its rows without copying.
            for (reply, start, _) in parts.into_iter().rev() {
                reply.send(Ok(rows.split_off(start)));
            }
        }
        Err(_) if parts.len() > 1 => {
            for (reply, start, end) in parts {
                reply.send(call(&inputs[start..end]));
            }
        }
        Err(e) => {
            let (reply, ..) = parts.pop().expect("one request");
            reply.send(Err(e));
        }
    }
    inputs.len()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// A toy model: doubles numbers (one reply) or counts up (a stream), and records how far it counted.
    enum Request {
        Double(Vec<i64>, Once<Vec<i64>>),
        Count(usize, Stream<usize>),
    }

    fn start(produced: Arc<AtomicUsize>, capacity: usize) -> Worker<Request> {
        let (worker, name) = Worker::spawn(
            "toy",
            capacity,
            || Ok(((), "toy")),
            move |(), queue: Queue<Request>| {
                while let Some(batch) = queue.next_batch(8, Duration::ZERO, |_| 1) {
                    let mut doubles = Vec::new();
                    for request in batch {
                        match request {
                            Request::Double(v, reply) => doubles.push((v, reply)),
                            Request::Count(n, stream) => {
                                // As the chat model hands out text: offered, and offered again while the
                                // reader is behind.
                                'count: for i in 0..n {
                                    let mut item = Ok(i);
                                    loop {
                                        match stream.offer(item) {
                                            Offer::Taken => break,
                                            Offer::Full(back) => item = back,
                                            Offer::Gone => break 'count,
                                        }
                                        std::thread::sleep(Duration::from_millis(1));
                                    }
                                    produced.fetch_add(1, Ordering::SeqCst);
                                }
                            }
                        }
                    }
                    run_joint(doubles, |v: &[i64]| {
                        if v.contains(&13) {
                            return Err(lens_models::Error::InvalidInput { message: "13 is refused".into() });
                        }
                        if v.contains(&666) {
                            panic!("the toy panics");
                        }
                        Ok(v.iter().map(|x| x * 2).collect())
                    });
                }
            },
        )
        .unwrap();
        assert_eq!(name, "toy");
        worker
    }

    #[tokio::test]
    async fn single_answers_and_failures_stay_with_their_request() {
        let worker = start(Arc::default(), 16);
        let ok = worker.call(|r| Request::Double(vec![1, 2], r), false).await.unwrap();
        assert_eq!(ok, [2, 4]);
        let refused = worker.call(|r| Request::Double(vec![13], r), false).await.unwrap_err();
        assert!(matches!(refused, ModelError::Model(_)), "{refused}");
        let panicked = worker.call(|r| Request::Double(vec![666], r), false).await.unwrap_err();
        assert!(matches!(panicked, ModelError::Panicked(ref m) if m.contains("toy panics")), "{panicked}");
        // The thread lives on.
        assert_eq!(worker.call(|r| Request::Double(vec![5], r), true).await.unwrap(), [10]);
    }

    #[tokio::test]
    async fn a_stream_yields_items_as_they_are_made_and_stops_when_dropped() {
        let produced = Arc::new(AtomicUsize::new(0));
        let worker = start(Arc::clone(&produced), 16);
        let mut rx = worker.stream(|s| Request::Count(5, s), 2, false).await.unwrap();
        let mut got = Vec::new();
        while let Some(item) = rx.recv().await {
            got.push(item.unwrap());
        }
        assert_eq!(got, [0, 1, 2, 3, 4]);

        // A receiver that reads two items and goes away: the model stops soon after, far before 1000.
        produced.store(0, Ordering::SeqCst);
        let mut rx = worker.stream(|s| Request::Count(1_000_000, s), 2, false).await.unwrap();
        assert_eq!(rx.recv().await.unwrap().unwrap(), 0);
        assert_eq!(rx.recv().await.unwrap().unwrap(), 1);
        drop(rx);
        // The next request is served, so the cancelled one has ended.
        assert_eq!(worker.call(|r| Request::Double(vec![1], r), false).await.unwrap(), [2]);
        let made = produced.load(Ordering::SeqCst);
        assert!(made < 10, "the model went on for {made} items after its receiver left");
    }

    #[tokio::test]
    async fn a_full_queue_is_overloaded_without_wait() {
        // One slot, and the thread held busy by a stream nobody reads (buffer 1).
        let worker = start(Arc::default(), 1);
        let _held = worker.stream(|s| Request::Count(3, s), 1, false).await.unwrap();
        // The thread takes the stream request and waits to hand over its second item; the slot fills next.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let (reply, _rx) = oneshot::channel();
        worker.submit(Request::Double(vec![1], Once(reply)), false).await.unwrap();
        let (reply, _rx) = oneshot::channel();
        let full = worker.submit(Request::Double(vec![1], Once(reply)), false).await.unwrap_err();
        assert!(matches!(full, ModelError::Overloaded), "{full}");
    }

    #[test]
    fn a_load_error_comes_back_to_the_caller() {
        let err = Worker::<Request>::spawn::<(), ()>(
            "broken",
            4,
            || Err(anyhow::anyhow!("no weights here")),
            |(), _| unreachable!("never served"),
        )
        .err()
        .unwrap();
        assert_eq!(err.to_string(), "no weights here");
    }
}
