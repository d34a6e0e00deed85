//! A stand-in for the speech APIs the orb's voice calls: OpenAI-compatible
//! `POST /v1/audio/transcriptions` and `POST /v1/audio/speech`, and ElevenLabs
//! `POST /v1/text-to-speech/{voice}/stream`, on 127.0.0.1.
//!
//! Transcriptions parse the multipart body and the WAV inside (sample rate,
//! channels, samples, duration) and answer `{"text": …}` from a queue (one
//! per request, the last repeats); speech answers a fixed PCM tone
//! ([`tone_pcm`]: 1 s of 440 Hz, 24 kHz 16-bit LE mono) in a few chunks.
//! Every request is recorded before its [`Behaviour`] applies, so retries can
//! be counted; each endpoint can answer, fail with 500, hang, or answer late.
//!
//! Blocking `std::net` served from a `std::thread` that [`VoiceStub::start`]
//! spawns after binding on the calling thread, with no tokio runtime: a test
//! thread that entered a private network namespace (`unshare(CLONE_NEWNET)`)
//! gets a stub inside it (threads inherit their creator's namespace). Every
//! loop is bounded (by the stop flag, read timeouts, deadlines and size caps);
//! dropping the stub stops every connection and joins the threads.

use std::collections::VecDeque;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// Largest request head read.
const MAX_HEAD: usize = 64 << 10;
/// Largest request body read (a 5-minute 16 kHz WAV is 9.6 MB).
const MAX_BODY: usize = 32 << 20;
/// Bound of reading one request.
const READ_DEADLINE: Duration = Duration::from_secs(10);
/// Connections served at once; more are closed at once.
const MAX_CONNECTIONS: usize = 64;
/// How often waiting threads look at the stop flag.
const TICK: Duration = Duration::from_millis(10);
/// Sample rate of [`tone_pcm`].
pub const TONE_RATE: u32 = 24_000;
/// Chunks [`tone_pcm`] is sent in, and the pause between two.
const TONE_CHUNKS: usize = 4;
const TONE_GAP: Duration = Duration::from_millis(20);

/// One of the stub's endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `POST /v1/audio/transcriptions`.
    Transcriptions,
    /// `POST /v1/audio/speech` (OpenAI).
    Speech,
    /// `POST /v1/text-to-speech/{voice}/stream` (ElevenLabs).
    ElevenLabs,
    /// `POST /v1/chat/completions` (the orb's brain): answers [`VoiceStub::set_answer`].
    Chat,
}

impl Endpoint {
    fn index(self) -> usize {
        match self {
            Self::Transcriptions => 0,
            Self::Speech => 1,
            Self::ElevenLabs => 2,
            Self::Chat => 3,
        }
    }
}

/// How an endpoint treats a request (after recording it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    /// The normal answer.
    Answer,
    /// `500` with a JSON error.
    Fail,
    /// Never answers (until the stub drops).
    Hang,
    /// The normal answer after this long.
    Delay(Duration),
}

/// What a WAV upload held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WavInfo {
    /// Samples per second.
    pub sample_rate: u32,
    /// Channels.
    pub channels: u16,
    /// Bits per sample.
    pub bits_per_sample: u16,
    /// Samples per channel in the `data` chunk.
    pub samples: u64,
    /// `samples` as milliseconds.
    pub duration_ms: u64,
}

/// One `POST /v1/audio/transcriptions`.
#[derive(Debug, Clone)]
pub struct Transcription {
    /// The `model` field.
    pub model: Option<String>,
    /// The `response_format` field.
    pub response_format: Option<String>,
    /// The `language` field.
    pub language: Option<String>,
    /// The `file` part's file name.
    pub file_name: Option<String>,
    /// The `file` part's content type.
    pub file_type: Option<String>,
    /// The bearer key of `Authorization`, if any.
    pub bearer: Option<String>,
    /// The WAV in the `file` part, or why it could not be read.
    pub wav: Result<WavInfo, String>,
}

/// One speech request (either API).
#[derive(Debug, Clone)]
pub struct Speech {
    /// Which API.
    pub endpoint: Endpoint,
    /// The request path with its query.
    pub path: String,
    /// `input` (OpenAI) or `text` (ElevenLabs).
    pub text: String,
    /// `model` or `model_id`.
    pub model: String,
    /// `voice` (OpenAI) or the path's voice id (ElevenLabs).
    pub voice: String,
    /// `response_format` (OpenAI) or the `output_format` query (ElevenLabs).
    pub format: String,
    /// The bearer key (OpenAI) or `xi-api-key` (ElevenLabs), if any.
    pub key: Option<String>,
}

#[derive(Debug)]
struct State {
    behaviours: [Behaviour; 4],
    transcripts: VecDeque<String>,
    answer: String,
    speech_ms: u64,
    prompts: Vec<String>,
    transcriptions: Vec<Transcription>,
    speeches: Vec<Speech>,
    requests: [usize; 4],
}

#[derive(Debug)]
struct Shared {
    stop: AtomicBool,
    state: Mutex<State>,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    /// Sleeps `duration` in ticks; false when the stub stopped meanwhile.
    fn sleep(&self, duration: Duration) -> bool {
        let end = Instant::now() + duration;
        while Instant::now() < end {
            if self.stopped() {
                return false;
            }
            std::thread::sleep(TICK.min(end.saturating_duration_since(Instant::now())));
        }
        !self.stopped()
    }
}

/// The stub server; dropping it stops it.
#[derive(Debug)]
pub struct VoiceStub {
    addr: SocketAddr,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl VoiceStub {
    /// Binds 127.0.0.1:0 on the calling thread (so in its network namespace)
    /// and serves from a thread of its own. Every endpoint answers; the
    /// transcript is `hello assistant`.
    pub fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        listener.set_nonblocking(true).expect("nonblocking listener");
        let addr = listener.local_addr().expect("local addr");
        let shared = Arc::new(Shared {
            stop: AtomicBool::new(false),
            state: Mutex::new(State {
                behaviours: [Behaviour::Answer; 4],
                transcripts: VecDeque::from([String::from("hello assistant")]),
                answer: String::from("Hello from the stub brain."),
                speech_ms: 1000,
                prompts: Vec::new(),
                transcriptions: Vec::new(),
                speeches: Vec::new(),
                requests: [0; 4],
            }),
        });
        let serving = shared.clone();
        let thread = std::thread::Builder::new()
            .name("voice-stub".into())
            .spawn(move || accept_loop(&listener, &serving))
            .expect("spawn the voice stub");
        Self {
            addr,
            shared,
            thread: Some(thread),
        }
    }

    /// `http://127.0.0.1:PORT/v1`, for `ORB_STT_BASE_URL` / `ORB_TTS_BASE_URL` / `OPENAI_BASE_URL`.
    pub fn openai_base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// `http://127.0.0.1:PORT`, for `ELEVENLABS_BASE_URL`.
    pub fn elevenlabs_base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// How `endpoint` treats the next requests.
    pub fn set(&self, endpoint: Endpoint, behaviour: Behaviour) {
        self.shared.state().behaviours[endpoint.index()] = behaviour;
    }

    /// The transcripts answered, one per request in order; the last repeats.
    ///
    /// # Panics
    /// When `transcripts` is empty.
    pub fn set_transcripts<S: Into<String>>(&self, transcripts: impl IntoIterator<Item = S>) {
        let queue: VecDeque<String> = transcripts.into_iter().map(Into::into).collect();
        assert!(!queue.is_empty(), "at least one transcript");
        self.shared.state().transcripts = queue;
    }

    /// What the chat endpoint answers (the brain's reply).
    pub fn set_answer(&self, answer: &str) {
        self.shared.state().answer = answer.to_owned();
    }

    /// How long the speech answer's tone lasts (1000 ms unless set).
    pub fn set_speech_ms(&self, ms: u64) {
        self.shared.state().speech_ms = ms;
    }

    /// The user messages the chat endpoint received, in order.
    pub fn prompts(&self) -> Vec<String> {
        self.shared.state().prompts.clone()
    }

    /// Every transcription request so far (whatever it was answered).
    pub fn transcriptions(&self) -> Vec<Transcription> {
        self.shared.state().transcriptions.clone()
    }

    /// Every speech request so far, both APIs (whatever it was answered).
    pub fn speeches(&self) -> Vec<Speech> {
        self.shared.state().speeches.clone()
    }

    /// Requests `endpoint` received so far (retries included).
    pub fn requests(&self, endpoint: Endpoint) -> usize {
        self.shared.state().requests[endpoint.index()]
    }
}

impl Drop for VoiceStub {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The speech answer: 1 s of a 440 Hz tone at [`TONE_RATE`], 16-bit LE mono.
pub fn tone_pcm() -> Vec<u8> {
    tone_pcm_ms(1000)
}

/// `ms` of the speech answer's tone.
pub fn tone_pcm_ms(ms: u64) -> Vec<u8> {
    let samples = u32::try_from(u64::from(TONE_RATE) * ms / 1000).unwrap_or(u32::MAX);
    (0..samples)
        .flat_map(|n| {
            let t = f64::from(n) / f64::from(TONE_RATE);
            let sample = (8000.0 * (2.0 * std::f64::consts::PI * 440.0 * t).sin()) as i16;
            sample.to_le_bytes()
        })
        .collect()
}

fn accept_loop(listener: &TcpListener, shared: &Arc<Shared>) {
    let mut connections: Vec<JoinHandle<()>> = Vec::new();
    while !shared.stopped() {
        match listener.accept() {
            Ok((socket, _)) => {
                connections.retain(|c| !c.is_finished());
                if connections.len() >= MAX_CONNECTIONS {
                    continue;
                }
                let shared = shared.clone();
                if let Ok(handle) = std::thread::Builder::new()
                    .name("voice-stub-conn".into())
                    .spawn(move || serve(socket, &shared))
                {
                    connections.push(handle);
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => std::thread::sleep(TICK),
            Err(_) => std::thread::sleep(TICK),
        }
    }
    for connection in connections {
        let _ = connection.join();
    }
}

/// A request as read.
struct Request {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

fn serve(mut socket: TcpStream, shared: &Shared) {
    if socket.set_nonblocking(false).is_err() || socket.set_read_timeout(Some(Duration::from_millis(50))).is_err() {
        return;
    }
    let _ = socket.set_write_timeout(Some(Duration::from_secs(5)));
    let request = match read_request(&mut socket, shared) {
        Ok(request) => request,
        Err(Some(status)) => return respond(&mut socket, status, "application/json", b"{}"),
        Err(None) => return,
    };
    let Some(endpoint) = route(&request) else {
        return respond(&mut socket, 404, "application/json", br#"{"error":"no such endpoint"}"#);
    };
    let transcript = record(shared, endpoint, &request);
    let behaviour = shared.state().behaviours[endpoint.index()];
    match behaviour {
        Behaviour::Answer => {}
        Behaviour::Fail => {
            return respond(
                &mut socket,
                500,
                "application/json",
                br#"{"error":{"message":"stub failure"}}"#,
            );
        }
        Behaviour::Hang => {
            // Until the stub drops (each tick looks at the stop flag).
            while shared.sleep(Duration::from_millis(100)) {}
            return;
        }
        Behaviour::Delay(delay) => {
            if !shared.sleep(delay) {
                return;
            }
        }
    }
    match endpoint {
        Endpoint::Transcriptions => {
            let body = json!({ "text": transcript }).to_string();
            respond(&mut socket, 200, "application/json", body.as_bytes());
        }
        Endpoint::Speech | Endpoint::ElevenLabs => send_tone(&mut socket, shared),
        Endpoint::Chat => {
            let body =
                json!({ "choices": [{ "message": { "role": "assistant", "content": transcript } }] }).to_string();
            respond(&mut socket, 200, "application/json", body.as_bytes());
        }
    }
}

fn route(request: &Request) -> Option<Endpoint> {
    if request.method != "POST" {
        return None;
    }
    let path = request.path.split('?').next().unwrap_or_default();
    match path {
        "/v1/audio/transcriptions" => Some(Endpoint::Transcriptions),
        "/v1/audio/speech" => Some(Endpoint::Speech),
        "/v1/chat/completions" => Some(Endpoint::Chat),
        _ => {
            let voice = path.strip_prefix("/v1/text-to-speech/")?.strip_suffix("/stream")?;
            (!voice.is_empty() && !voice.contains('/')).then_some(Endpoint::ElevenLabs)
        }
    }
}

/// Records `request`; for a transcription, returns the transcript to answer.
fn record(shared: &Shared, endpoint: Endpoint, request: &Request) -> String {
    let mut state = shared.state();
    state.requests[endpoint.index()] += 1;
    match endpoint {
        Endpoint::Transcriptions => {
            state.transcriptions.push(parse_transcription(request));
            if state.transcripts.len() > 1 {
                state.transcripts.pop_front().unwrap_or_default()
            } else {
                state.transcripts.front().cloned().unwrap_or_default()
            }
        }
        Endpoint::Speech | Endpoint::ElevenLabs => {
            state.speeches.push(parse_speech(endpoint, request));
            String::new()
        }
        Endpoint::Chat => {
            let body: Value = serde_json::from_slice(&request.body).unwrap_or(Value::Null);
            let last = body["messages"]
                .as_array()
                .and_then(|m| m.last())
                .and_then(|m| m["content"].as_str())
                .unwrap_or_default()
                .to_owned();
            state.prompts.push(last);
            state.answer.clone()
        }
    }
}

fn parse_speech(endpoint: Endpoint, request: &Request) -> Speech {
    let body: Value = serde_json::from_slice(&request.body).unwrap_or(Value::Null);
    let text = |key: &str| body[key].as_str().unwrap_or_default().to_owned();
    match endpoint {
        Endpoint::ElevenLabs => {
            let (path, query) = request.path.split_once('?').unwrap_or((&request.path, ""));
            let voice = path
                .trim_start_matches("/v1/text-to-speech/")
                .trim_end_matches("/stream");
            let format = query
                .split('&')
                .find_map(|pair| pair.strip_prefix("output_format="))
                .unwrap_or_default();
            Speech {
                endpoint,
                path: request.path.clone(),
                text: text("text"),
                model: text("model_id"),
                voice: voice.to_owned(),
                format: format.to_owned(),
                key: request.header("xi-api-key").map(str::to_owned),
            }
        }
        Endpoint::Speech | Endpoint::Transcriptions | Endpoint::Chat => Speech {
            endpoint,
            path: request.path.clone(),
            text: text("input"),
            model: text("model"),
            voice: text("voice"),
            format: text("response_format"),
            key: bearer(request),
        },
    }
}

fn bearer(request: &Request) -> Option<String> {
    request
        .header("authorization")
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_owned)
}

fn parse_transcription(request: &Request) -> Transcription {
    let parts = request
        .header("content-type")
        .and_then(|t| t.split_once("boundary="))
        .map(|(_, b)| multipart_parts(&request.body, b.trim_matches('"')))
        .unwrap_or_default();
    let field = |name: &str| {
        parts
            .iter()
            .find(|p| p.name == name)
            .map(|p| String::from_utf8_lossy(&p.content).into_owned())
    };
    let file = parts.iter().find(|p| p.name == "file");
    Transcription {
        model: field("model"),
        response_format: field("response_format"),
        language: field("language"),
        file_name: file.and_then(|f| f.file_name.clone()),
        file_type: file.and_then(|f| f.content_type.clone()),
        bearer: bearer(request),
        wav: file.map_or_else(|| Err("no file part".to_owned()), |f| parse_wav(&f.content)),
    }
}

/// One part of a `multipart/form-data` body.
struct Part {
    name: String,
    file_name: Option<String>,
    content_type: Option<String>,
    content: Vec<u8>,
}

/// The parts of `body` split at `--boundary` (at most 32).
fn multipart_parts(body: &[u8], boundary: &str) -> Vec<Part> {
    let delimiter = format!("--{boundary}");
    let mut parts = Vec::new();
    let mut rest = match find(body, delimiter.as_bytes()) {
        Some(at) => &body[at + delimiter.len()..],
        None => return parts,
    };
    let closing = format!("\r\n{delimiter}");
    while parts.len() < 32 && !rest.starts_with(b"--") {
        let Some(after) = rest.strip_prefix(b"\r\n") else { break };
        let Some(end) = find(after, closing.as_bytes()) else {
            break;
        };
        let part = &after[..end];
        rest = &after[end + closing.len()..];
        let Some(split) = find(part, b"\r\n\r\n") else { continue };
        let head = String::from_utf8_lossy(&part[..split]);
        let mut name = String::new();
        let mut file_name = None;
        let mut content_type = None;
        for line in head.lines() {
            let Some((key, value)) = line.split_once(':') else {
                continue;
            };
            if key.trim().eq_ignore_ascii_case("content-disposition") {
                name = quoted(value, "name").unwrap_or_default();
                file_name = quoted(value, "filename");
            } else if key.trim().eq_ignore_ascii_case("content-type") {
                content_type = Some(value.trim().to_owned());
            }
        }
        parts.push(Part {
            name,
            file_name,
            content_type,
            content: part[split + 4..].to_vec(),
        });
    }
    parts
}

/// `key="value"` among the `;`-separated parameters of a header value.
fn quoted(header: &str, key: &str) -> Option<String> {
    header.split(';').find_map(|param| {
        let (k, v) = param.split_once('=')?;
        (k.trim() == key).then(|| v.trim().trim_matches('"').to_owned())
    })
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Reads a RIFF/WAVE file's `fmt ` and `data` chunks (at most 64 chunks).
fn parse_wav(wav: &[u8]) -> Result<WavInfo, String> {
    if wav.len() < 12 || &wav[..4] != b"RIFF" || &wav[8..12] != b"WAVE" {
        return Err("not a RIFF/WAVE file".into());
    }
    let u16_at = |at: usize| wav.get(at..at + 2).map(|b| u16::from_le_bytes([b[0], b[1]]));
    let u32_at = |at: usize| {
        wav.get(at..at + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    let mut format = None;
    let mut data_len = None;
    let mut at = 12;
    for _ in 0..64 {
        let (Some(id), Some(size)) = (wav.get(at..at + 4), u32_at(at + 4)) else {
            break;
        };
        let body = at + 8;
        match id {
            b"fmt " => {
                let (Some(channels), Some(rate), Some(bits)) = (u16_at(body + 2), u32_at(body + 4), u16_at(body + 14))
                else {
                    return Err("short fmt chunk".into());
                };
                format = Some((channels, rate, bits));
            }
            b"data" => data_len = Some((size as usize).min(wav.len().saturating_sub(body))),
            _ => {}
        }
        at = body + size as usize + (size as usize % 2);
    }
    let (channels, sample_rate, bits_per_sample) = format.ok_or("no fmt chunk")?;
    let data_len = data_len.ok_or("no data chunk")?;
    let frame = usize::from(channels) * usize::from(bits_per_sample / 8);
    if frame == 0 || sample_rate == 0 {
        return Err(format!(
            "bad format: {channels} channels, {bits_per_sample} bits, {sample_rate} Hz"
        ));
    }
    let samples = (data_len / frame) as u64;
    Ok(WavInfo {
        sample_rate,
        channels,
        bits_per_sample,
        samples,
        duration_ms: samples * 1000 / u64::from(sample_rate),
    })
}

/// Reads one request within [`READ_DEADLINE`]; `Err(Some(status))` to refuse it.
fn read_request(socket: &mut TcpStream, shared: &Shared) -> Result<Request, Option<u16>> {
    let deadline = Instant::now() + READ_DEADLINE;
    let mut data = Vec::new();
    let mut buf = vec![0u8; 64 << 10];
    let mut head_end = None;
    let mut need = usize::MAX;
    while data.len() < need {
        if shared.stopped() || Instant::now() > deadline {
            return Err(None);
        }
        match socket.read(&mut buf) {
            Ok(0) => return Err(None),
            Ok(n) => data.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                ) =>
            {
                continue;
            }
            Err(_) => return Err(None),
        }
        if head_end.is_none() {
            match find(&data, b"\r\n\r\n") {
                Some(end) => {
                    head_end = Some(end);
                    let head = String::from_utf8_lossy(&data[..end]);
                    if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
                        return Err(Some(411));
                    }
                    let length = head
                        .lines()
                        .find_map(|l| {
                            let (k, v) = l.split_once(':')?;
                            k.trim()
                                .eq_ignore_ascii_case("content-length")
                                .then(|| v.trim().parse::<usize>().ok())?
                        })
                        .unwrap_or(0);
                    if length > MAX_BODY {
                        return Err(Some(413));
                    }
                    need = end + 4 + length;
                }
                None if data.len() > MAX_HEAD => return Err(Some(431)),
                None => {}
            }
        }
    }
    let end = head_end.ok_or(None)?;
    let head = String::from_utf8_lossy(&data[..end]).into_owned();
    let mut lines = head.lines();
    let mut first = lines.next().unwrap_or_default().split(' ');
    let method = first.next().unwrap_or_default().to_owned();
    let path = first.next().unwrap_or_default().to_owned();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    Ok(Request {
        method,
        path,
        headers,
        body: data[end + 4..need].to_vec(),
    })
}

fn respond(socket: &mut TcpStream, status: u16, content_type: &str, body: &[u8]) {
    let head = format!(
        "HTTP/1.1 {status} Stub\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    let _ = socket.write_all(head.as_bytes());
    let _ = socket.write_all(body);
    let _ = socket.flush();
}

/// [`tone_pcm`] as a chunked answer in [`TONE_CHUNKS`] pieces, [`TONE_GAP`] apart.
fn send_tone(socket: &mut TcpStream, shared: &Shared) {
    let head = "HTTP/1.1 200 OK\r\ncontent-type: audio/pcm\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n";
    if socket.write_all(head.as_bytes()).is_err() {
        return;
    }
    let ms = shared.state().speech_ms;
    let pcm = tone_pcm_ms(ms);
    for (n, piece) in pcm.chunks(pcm.len().div_ceil(TONE_CHUNKS)).enumerate() {
        if n > 0 && !shared.sleep(TONE_GAP) {
            return;
        }
        let framed = [format!("{:x}\r\n", piece.len()).as_bytes(), piece, b"\r\n"].concat();
        if socket.write_all(&framed).and_then(|()| socket.flush()).is_err() {
            return;
        }
    }
    let _ = socket.write_all(b"0\r\n\r\n");
    let _ = socket.flush();
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 16-bit mono WAV of `samples` samples at `rate`.
    fn wav(rate: u32, samples: u32) -> Vec<u8> {
        let data = samples * 2;
        let mut out = Vec::new();
        out.extend_from_slice(b"RIFF");
        out.extend_from_slice(&(36 + data).to_le_bytes());
        out.extend_from_slice(b"WAVEfmt ");
        out.extend_from_slice(&16u32.to_le_bytes());
        out.extend_from_slice(&1u16.to_le_bytes());
        out.extend_from_slice(&1u16.to_le_bytes());
        out.extend_from_slice(&rate.to_le_bytes());
        out.extend_from_slice(&(rate * 2).to_le_bytes());
        out.extend_from_slice(&2u16.to_le_bytes());
        out.extend_from_slice(&16u16.to_le_bytes());
        out.extend_from_slice(b"data");
        out.extend_from_slice(&data.to_le_bytes());
        out.resize(out.len() + data as usize, 0);
        out
    }

    /// Posts `body` and reads the whole answer (connection: close), within `timeout`.
    fn post(stub: &VoiceStub, path: &str, headers: &str, body: &[u8], timeout: Duration) -> Option<Vec<u8>> {
        let mut socket = TcpStream::connect(stub.addr()).ok()?;
        socket.set_read_timeout(Some(timeout)).ok()?;
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{headers}content-length: {}\r\n\r\n",
            body.len()
        );
        socket.write_all(&[head.as_bytes(), body].concat()).ok()?;
        let mut answer = Vec::new();
        socket.read_to_end(&mut answer).ok()?;
        Some(answer)
    }

    fn transcription_request(stub: &VoiceStub, timeout: Duration) -> Option<String> {
        let mut body = Vec::new();
        body.extend_from_slice(b"--XX\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nwhisper-1\r\n");
        body.extend_from_slice(
            b"--XX\r\nContent-Disposition: form-data; name=\"file\"; filename=\"audio.wav\"\r\nContent-Type: audio/wav\r\n\r\n",
        );
        body.extend_from_slice(&wav(16_000, 8_000));
        body.extend_from_slice(b"\r\n--XX--\r\n");
        let headers = "authorization: Bearer sk-test\r\ncontent-type: multipart/form-data; boundary=XX\r\n";
        let answer = post(stub, "/v1/audio/transcriptions", headers, &body, timeout)?;
        Some(String::from_utf8_lossy(&answer).into_owned())
    }

    #[test]
    fn transcriptions_record_the_wav_and_answer_the_queue() {
        let stub = VoiceStub::start();
        stub.set_transcripts(["first", "second"]);
        let timeout = Duration::from_secs(5);
        for expected in ["first", "second", "second"] {
            let answer = transcription_request(&stub, timeout).expect("answer");
            assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
            assert!(answer.ends_with(&format!("{{\"text\":\"{expected}\"}}")), "{answer}");
        }
        let records = stub.transcriptions();
        assert_eq!(records.len(), 3);
        let r = &records[0];
        assert_eq!(r.model.as_deref(), Some("whisper-1"));
        assert_eq!(r.bearer.as_deref(), Some("sk-test"));
        assert_eq!(
            (r.file_name.as_deref(), r.file_type.as_deref()),
            (Some("audio.wav"), Some("audio/wav"))
        );
        assert_eq!(
            r.wav,
            Ok(WavInfo {
                sample_rate: 16_000,
                channels: 1,
                bits_per_sample: 16,
                samples: 8_000,
                duration_ms: 500,
            })
        );
    }

    #[test]
    fn speech_answers_the_tone_chunked_and_failures_and_hangs_are_configurable() {
        let stub = VoiceStub::start();
        let timeout = Duration::from_secs(5);
        let answer = post(
            &stub,
            "/v1/text-to-speech/v1d/stream?output_format=pcm_24000",
            "xi-api-key: xi\r\ncontent-type: application/json\r\n",
            br#"{"text":"Hi there","model_id":"eleven_flash_v2_5"}"#,
            timeout,
        )
        .expect("answer");
        let split = find(&answer, b"\r\n\r\n").expect("head");
        assert!(answer.starts_with(b"HTTP/1.1 200"));
        // Decode the chunked body.
        let mut body = Vec::new();
        let mut rest = &answer[split + 4..];
        for _ in 0..16 {
            let line_end = find(rest, b"\r\n").expect("chunk size");
            let size = usize::from_str_radix(std::str::from_utf8(&rest[..line_end]).expect("hex"), 16).expect("size");
            if size == 0 {
                break;
            }
            body.extend_from_slice(&rest[line_end + 2..line_end + 2 + size]);
            rest = &rest[line_end + 2 + size + 2..];
        }
        assert_eq!(body, tone_pcm());
        assert_eq!(body.len(), 48_000, "1 s at 24 kHz, 16-bit");
        let speech = &stub.speeches()[0];
        assert_eq!(
            (
                speech.endpoint,
                speech.text.as_str(),
                speech.voice.as_str(),
                speech.format.as_str(),
                speech.key.as_deref()
            ),
            (Endpoint::ElevenLabs, "Hi there", "v1d", "pcm_24000", Some("xi"))
        );

        stub.set(Endpoint::Speech, Behaviour::Fail);
        let json = "authorization: Bearer sk\r\ncontent-type: application/json\r\n";
        let body = br#"{"model":"m","input":"x","voice":"alloy","response_format":"pcm"}"#;
        let answer = post(&stub, "/v1/audio/speech", json, body, timeout).expect("answer");
        assert!(answer.starts_with(b"HTTP/1.1 500"));
        assert_eq!(stub.requests(Endpoint::Speech), 1);
        assert_eq!(stub.speeches()[1].key.as_deref(), Some("sk"));

        stub.set(Endpoint::Transcriptions, Behaviour::Hang);
        assert!(
            transcription_request(&stub, Duration::from_millis(300)).is_none(),
            "hangs"
        );
        stub.set(Endpoint::Transcriptions, Behaviour::Delay(Duration::from_millis(200)));
        let started = Instant::now();
        assert!(transcription_request(&stub, timeout).is_some_and(|a| a.starts_with("HTTP/1.1 200")));
        assert!(started.elapsed() >= Duration::from_millis(200));
        assert_eq!(stub.requests(Endpoint::Transcriptions), 2);
        let started = Instant::now();
        drop(stub);
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "drop stops the hung connection too"
        );
    }
}
