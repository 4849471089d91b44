//! What a connection beyond the server's cap gets: a 503 in OpenAI's error shape that
//! says why and when to retry, then the close. Answering costs a file descriptor for a
//! moment, where leaving the connection in the listen queue would keep its client
//! waiting, without a word, for a place that stalled clients may hold for their whole
//! timeouts.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;

use crate::error::ApiError;
use crate::raw_reply::closing_response;

/// Refusals being answered at once; connections beyond that are closed unanswered, so
/// a flood of them holds no more than this many sockets besides the open connections.
const MOST_AT_ONCE: usize = 32;

/// How long a refusal may take: a client that neither reads nor closes is dropped then.
const LINGER: Duration = Duration::from_secs(1);

pub(crate) struct Refusals {
    reply: Arc<[u8]>,
    answering: Arc<Semaphore>,
}

impl Refusals {
    pub(crate) fn new(max_connections: usize) -> Self {
        Self {
            reply: closing_response(&ApiError::too_many_connections(max_connections), &[]).into(),
            answering: Arc::new(Semaphore::new(MOST_AT_ONCE)),
        }
    }

    /// Answers and closes `stream` on a task of its own: the accept loop never waits for
    /// a client.
    pub(crate) fn refuse(&self, stream: TcpStream) {
        let Ok(place) = Arc::clone(&self.answering).try_acquire_owned() else {
            return;
        };
        let reply = Arc::clone(&self.reply);
        tokio::spawn(async move {
            let _place = place;
            let _ = tokio::time::timeout(LINGER, answer(stream, &reply)).await;
        });
    }
}

/// Writes the reply, then reads what the client sent until it closes: a socket closed
/// with input unread sends a reset, which can destroy the reply before the client reads it.
async fn answer(mut stream: TcpStream, reply: &[u8]) -> std::io::Result<()> {
    stream.write_all(reply).await?;
    stream.shutdown().await?;
    let mut sink = [0u8; 1024];
    while stream.read(&mut sink).await? > 0 {}
    Ok(())
}
