//! The voice settings (`ORB_VOICE_*`, `ORB_STT_*`, `ORB_TTS_*`, `ELEVENLABS_*`,
//! `ORB_PROVIDER_*`, `ORB_LOG_TRANSCRIPTS`) and the one decision whether the
//! voice pipeline runs.
//!
//! [`VoiceArgs`] is the clap side (flag > environment, raw strings, like
//! [`crate::cli::Cli`]); [`VoiceArgs::resolve`] applies `.env` and the defaults
//! through the shared [`Validator`], so a bad value is reported with every other
//! bad setting (exit 64), naming the variable. The API keys have no flag: they
//! are read like the brain's `OPENAI_API_KEY` (environment, then `.env`), held
//! as [`Secret`]s and never printed. [`decide`] is the pure rule that turns the
//! keys and modes into a [`VoicePlan`]: the providers to build, or why voice is
//! off (a sentence for the startup log).

use std::time::Duration;

use shared::secret::Secret;
use shared::settings::{Key, Rule, Setting, Validator};

use crate::settings::OpenAiSettings;

const REPLY: Setting = Setting::new(
    Key::new("ORB_VOICE_REPLY", "voice-reply"),
    "addressed",
    "When the AI answers what it hears: `addressed` (an utterance naming it, see ORB_VOICE_NAMES), \
     `always` or `never`",
);
const NAMES: Setting = Setting::new(
    Key::new("ORB_VOICE_NAMES", "voice-names"),
    "assistant,AI",
    "Names that address the AI in speech, comma separated",
);
const END_SILENCE: Setting = Setting::new(
    Key::new("ORB_VOICE_END_SILENCE", "voice-end-silence"),
    "700",
    "Silence that ends an utterance, ms (50 to 10000)",
);
const MAX_UTTERANCE: Setting = Setting::new(
    Key::new("ORB_VOICE_MAX_UTTERANCE", "voice-max-utterance"),
    "15000",
    "Longest utterance sent to speech-to-text (longer speech is cut there), ms (500 to 300000)",
);
const STT_URL: Setting = Setting::derived(
    Key::new("ORB_STT_BASE_URL", "stt-base-url"),
    "OPENAI_BASE_URL",
    "OpenAI-compatible speech-to-text base URL (`/audio/transcriptions` is appended); when set, \
     it may be a self-hosted server that needs no OPENAI_API_KEY",
);
const STT_MODEL: Setting = Setting::new(
    Key::new("ORB_STT_MODEL", "stt-model"),
    "whisper-1",
    "Speech-to-text model",
);
const STT_LANGUAGE: Setting = Setting::derived(
    Key::new("ORB_STT_LANGUAGE", "stt-language"),
    "detected",
    "Language of the speech, ISO-639-1 (e.g. `en`)",
);
const TTS_PROVIDER: Setting = Setting::new(
    Key::new("ORB_TTS_PROVIDER", "tts-provider"),
    "auto",
    "Text-to-speech provider: `auto` (ElevenLabs when ELEVENLABS_API_KEY is set, else OpenAI), \
     `openai` or `elevenlabs`",
);
const TTS_URL: Setting = Setting::derived(
    Key::new("ORB_TTS_BASE_URL", "tts-base-url"),
    "OPENAI_BASE_URL",
    "OpenAI-compatible text-to-speech base URL (`/audio/speech` is appended); when set, it may be \
     a self-hosted server that needs no OPENAI_API_KEY",
);
const TTS_MODEL: Setting = Setting::new(
    Key::new("ORB_TTS_MODEL", "tts-model"),
    "gpt-4o-mini-tts",
    "OpenAI text-to-speech model",
);
const TTS_VOICE: Setting = Setting::new(Key::new("ORB_TTS_VOICE", "tts-voice"), "alloy", "OpenAI voice");
const ELEVEN_URL: Setting = Setting::new(
    Key::new("ELEVENLABS_BASE_URL", "elevenlabs-base-url"),
    "https://api.elevenlabs.io",
    "ElevenLabs API base URL (`/v1/text-to-speech/…` is appended)",
);
const ELEVEN_VOICE: Setting = Setting::new(
    Key::new("ELEVENLABS_VOICE_ID", "elevenlabs-voice-id"),
    "21m00Tcm4TlvDq8ikWAM",
    "ElevenLabs voice id",
);
const ELEVEN_MODEL: Setting = Setting::new(
    Key::new("ELEVENLABS_MODEL", "elevenlabs-model"),
    "eleven_flash_v2_5",
    "ElevenLabs model id",
);
/// Read like `OPENAI_API_KEY`: environment, then `.env`; never a flag, never logged.
const ELEVEN_KEY: Setting = Setting::derived(
    Key::env("ELEVENLABS_API_KEY"),
    "unset",
    "ElevenLabs API key (environment or `.env` only, never logged)",
);
const PROVIDER_TIMEOUT: Setting = Setting::new(
    Key::new("ORB_PROVIDER_TIMEOUT", "provider-timeout"),
    "10000",
    "Bound of one speech provider attempt, ms (text-to-speech: until the audio starts, then each \
     gap between its chunks)",
);
const PROVIDER_RETRIES: Setting = Setting::new(
    Key::new("ORB_PROVIDER_RETRIES", "provider-retries"),
    "2",
    "Retries of a speech provider call after its first attempt, 0 to 5 (on a timeout, a 5xx or a \
     connection error; never on a 4xx)",
);
const LOG_TRANSCRIPTS: Setting = Setting::new(
    Key::new("ORB_LOG_TRANSCRIPTS", "log-transcripts"),
    "false",
    "Log what participants say and what the AI speaks (off: only lengths and durations)",
);

/// The voice declarations (for the documentation checks).
#[cfg(test)]
pub(crate) const SETTINGS: &[&Setting] = &[
    &REPLY,
    &NAMES,
    &END_SILENCE,
    &MAX_UTTERANCE,
    &STT_URL,
    &STT_MODEL,
    &STT_LANGUAGE,
    &TTS_PROVIDER,
    &TTS_URL,
    &TTS_MODEL,
    &TTS_VOICE,
    &ELEVEN_URL,
    &ELEVEN_VOICE,
    &ELEVEN_MODEL,
    &ELEVEN_KEY,
    &PROVIDER_TIMEOUT,
    &PROVIDER_RETRIES,
    &LOG_TRANSCRIPTS,
];

/// Most retries `ORB_PROVIDER_RETRIES` accepts.
pub const MAX_RETRIES: u32 = 5;
/// First pause between two attempts (doubled each retry, jittered).
pub const RETRY_BASE_DELAY: Duration = Duration::from_millis(200);
/// Most names `ORB_VOICE_NAMES` accepts, and the longest name.
const MAX_NAMES: usize = 16;
const MAX_NAME_CHARS: usize = 40;

/// The voice flags, flattened into the orb's command line.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct VoiceArgs {
    /// `ORB_VOICE_REPLY`.
    #[arg(long = REPLY.long(), env = REPLY.env(), help = REPLY.help(), value_name = "addressed|always|never")]
    pub voice_reply: Option<String>,
    /// `ORB_VOICE_NAMES`.
    #[arg(long = NAMES.long(), env = NAMES.env(), help = NAMES.help(), value_name = "NAME,…")]
    pub voice_names: Option<String>,
    /// `ORB_VOICE_END_SILENCE`.
    #[arg(long = END_SILENCE.long(), env = END_SILENCE.env(), help = END_SILENCE.help(), value_name = "MS")]
    pub voice_end_silence: Option<String>,
    /// `ORB_VOICE_MAX_UTTERANCE`.
    #[arg(long = MAX_UTTERANCE.long(), env = MAX_UTTERANCE.env(), help = MAX_UTTERANCE.help(), value_name = "MS")]
    pub voice_max_utterance: Option<String>,
    /// `ORB_STT_BASE_URL`.
    #[arg(long = STT_URL.long(), env = STT_URL.env(), help = STT_URL.help(), value_name = "URL")]
    pub stt_base_url: Option<String>,
    /// `ORB_STT_MODEL`.
    #[arg(long = STT_MODEL.long(), env = STT_MODEL.env(), help = STT_MODEL.help(), value_name = "MODEL")]
    pub stt_model: Option<String>,
    /// `ORB_STT_LANGUAGE`.
    #[arg(long = STT_LANGUAGE.long(), env = STT_LANGUAGE.env(), help = STT_LANGUAGE.help(), value_name = "LANG")]
    pub stt_language: Option<String>,
    /// `ORB_TTS_PROVIDER`.
    #[arg(long = TTS_PROVIDER.long(), env = TTS_PROVIDER.env(), help = TTS_PROVIDER.help(), value_name = "auto|openai|elevenlabs")]
    pub tts_provider: Option<String>,
    /// `ORB_TTS_BASE_URL`.
    #[arg(long = TTS_URL.long(), env = TTS_URL.env(), help = TTS_URL.help(), value_name = "URL")]
    pub tts_base_url: Option<String>,
    /// `ORB_TTS_MODEL`.
    #[arg(long = TTS_MODEL.long(), env = TTS_MODEL.env(), help = TTS_MODEL.help(), value_name = "MODEL")]
    pub tts_model: Option<String>,
    /// `ORB_TTS_VOICE`.
    #[arg(long = TTS_VOICE.long(), env = TTS_VOICE.env(), help = TTS_VOICE.help(), value_name = "VOICE")]
    pub tts_voice: Option<String>,
    /// `ELEVENLABS_BASE_URL`.
    #[arg(long = ELEVEN_URL.long(), env = ELEVEN_URL.env(), help = ELEVEN_URL.help(), value_name = "URL")]
    pub elevenlabs_base_url: Option<String>,
    /// `ELEVENLABS_VOICE_ID`.
    #[arg(long = ELEVEN_VOICE.long(), env = ELEVEN_VOICE.env(), help = ELEVEN_VOICE.help(), value_name = "ID")]
    pub elevenlabs_voice_id: Option<String>,
    /// `ELEVENLABS_MODEL`.
    #[arg(long = ELEVEN_MODEL.long(), env = ELEVEN_MODEL.env(), help = ELEVEN_MODEL.help(), value_name = "MODEL")]
    pub elevenlabs_model: Option<String>,
    /// `ORB_PROVIDER_TIMEOUT`.
    #[arg(long = PROVIDER_TIMEOUT.long(), env = PROVIDER_TIMEOUT.env(), help = PROVIDER_TIMEOUT.help(), value_name = "MS")]
    pub provider_timeout: Option<String>,
    /// `ORB_PROVIDER_RETRIES`.
    #[arg(long = PROVIDER_RETRIES.long(), env = PROVIDER_RETRIES.env(), help = PROVIDER_RETRIES.help(), value_name = "N")]
    pub provider_retries: Option<String>,
    /// `ORB_LOG_TRANSCRIPTS`.
    #[arg(
        long = LOG_TRANSCRIPTS.long(),
        env = LOG_TRANSCRIPTS.env(),
        help = LOG_TRANSCRIPTS.help(),
        value_name = "BOOL",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true"
    )]
    pub log_transcripts: Option<String>,
}

/// `ORB_VOICE_REPLY`: which utterances the AI answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyMode {
    /// Only utterances that name the AI (`ORB_VOICE_NAMES`).
    Addressed,
    /// Every utterance.
    Always,
    /// None: the AI listens only.
    Never,
}

/// `ORB_TTS_PROVIDER` as given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TtsChoice {
    /// ElevenLabs when its key is set, else OpenAI.
    Auto,
    /// The OpenAI-compatible `/audio/speech`.
    OpenAi,
    /// ElevenLabs.
    ElevenLabs,
}

/// Bounds of one provider call: each attempt, how many, how far apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallPolicy {
    /// `ORB_PROVIDER_TIMEOUT`: bound of one attempt.
    pub timeout: Duration,
    /// `ORB_PROVIDER_RETRIES`: attempts after the first (at most [`MAX_RETRIES`]).
    pub retries: u32,
    /// First pause between attempts ([`RETRY_BASE_DELAY`]; tests shorten it).
    pub base_delay: Duration,
}

impl CallPolicy {
    /// Attempts in all: the first plus the retries.
    pub fn attempts(&self) -> u32 {
        1 + self.retries.min(MAX_RETRIES)
    }
}

/// The speech-to-text endpoint (OpenAI-compatible `/audio/transcriptions`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SttSettings {
    /// Base URL without a trailing `/` (`ORB_STT_BASE_URL`, else `OPENAI_BASE_URL`).
    pub base_url: String,
    /// Bearer key; `None` only for an explicit `ORB_STT_BASE_URL` without `OPENAI_API_KEY`.
    pub api_key: Option<Secret>,
    /// `ORB_STT_MODEL`.
    pub model: String,
    /// `ORB_STT_LANGUAGE`; `None`: the provider detects it.
    pub language: Option<String>,
}

/// The OpenAI-compatible `/audio/speech` endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenAiTtsSettings {
    /// Base URL without a trailing `/` (`ORB_TTS_BASE_URL`, else `OPENAI_BASE_URL`).
    pub base_url: String,
    /// Bearer key; `None` only for an explicit `ORB_TTS_BASE_URL` without `OPENAI_API_KEY`.
    pub api_key: Option<Secret>,
    /// `ORB_TTS_MODEL`.
    pub model: String,
    /// `ORB_TTS_VOICE`.
    pub voice: String,
}

/// The ElevenLabs streaming endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ElevenLabsSettings {
    /// `ELEVENLABS_BASE_URL` without a trailing `/`.
    pub base_url: String,
    /// `ELEVENLABS_API_KEY`.
    pub api_key: Secret,
    /// `ELEVENLABS_VOICE_ID` (checked safe for a URL path).
    pub voice_id: String,
    /// `ELEVENLABS_MODEL`.
    pub model: String,
}

/// Which text-to-speech provider to build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TtsSettings {
    /// OpenAI-compatible.
    OpenAi(OpenAiTtsSettings),
    /// ElevenLabs.
    ElevenLabs(ElevenLabsSettings),
}

/// Everything needed to build the providers
/// ([`crate::voice::providers::build`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderSettings {
    /// Speech-to-text.
    pub stt: SttSettings,
    /// Text-to-speech.
    pub tts: TtsSettings,
    /// Timeout and retries of every call.
    pub call: CallPolicy,
}

/// Whether the voice pipeline runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VoicePlan {
    /// Voice is off; `reason` is one sentence for the startup log.
    Off {
        /// Why, naming the setting to change.
        reason: String,
    },
    /// Voice runs with these providers.
    On(Box<ProviderSettings>),
}

/// The voice settings, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VoiceSettings {
    /// `ORB_VOICE_REPLY`.
    pub reply: ReplyMode,
    /// `ORB_VOICE_NAMES`: trimmed, none empty, at least one.
    pub names: Vec<String>,
    /// `ORB_VOICE_END_SILENCE`.
    pub end_silence: Duration,
    /// `ORB_VOICE_MAX_UTTERANCE` (longer than `end_silence`).
    pub max_utterance: Duration,
    /// `ORB_LOG_TRANSCRIPTS`: whether transcripts and spoken text may be logged.
    pub log_transcripts: bool,
    /// The providers, or why voice is off.
    pub plan: VoicePlan,
}

/// What the voice decision depends on outside the voice settings.
#[derive(Debug, Clone, Copy)]
pub struct VoiceContext<'a> {
    /// `ORB_TEST_MODE`: no external calls, so no voice.
    pub test_mode: bool,
    /// `ORB_MEDIA`: without media there is no call audio to hear or speak into.
    pub media_enabled: bool,
    /// The brain's OpenAI settings (`None` in test mode): the key and default base URL.
    pub openai: Option<&'a OpenAiSettings>,
}

/// The inputs of [`decide`]: which keys are present and what was asked for.
#[derive(Debug, Clone, Copy)]
pub struct Decision<'a> {
    /// `ORB_TEST_MODE`.
    pub test_mode: bool,
    /// `ORB_MEDIA`.
    pub media_enabled: bool,
    /// `OPENAI_API_KEY`, if set.
    pub openai_key: Option<&'a Secret>,
    /// `ELEVENLABS_API_KEY`, if set.
    pub elevenlabs_key: Option<&'a Secret>,
    /// Whether `ORB_STT_BASE_URL` was given.
    pub stt_url_given: bool,
    /// Whether `ORB_TTS_BASE_URL` was given.
    pub tts_url_given: bool,
    /// `ORB_TTS_PROVIDER`.
    pub tts: TtsChoice,
}

/// The text-to-speech provider [`decide`] picked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TtsKind {
    /// OpenAI-compatible `/audio/speech`.
    OpenAi,
    /// ElevenLabs.
    ElevenLabs,
}

/// Whether voice runs, and with which text-to-speech provider (speech-to-text
/// is always the OpenAI-compatible endpoint); `Err` says why voice is off.
///
/// Voice is off in test mode (no external calls) and without media. Speech-to-text
/// needs `OPENAI_API_KEY`, unless `ORB_STT_BASE_URL` was given: an explicit URL
/// may be a self-hosted server without keys, so the request then goes out
/// without `Authorization` (with it, when the key is set). OpenAI text-to-speech
/// follows the same rule with `ORB_TTS_BASE_URL`; ElevenLabs always needs
/// `ELEVENLABS_API_KEY`. `auto` picks ElevenLabs when its key is set.
pub fn decide(d: &Decision<'_>) -> Result<TtsKind, String> {
    if d.test_mode {
        return Err("test mode (ORB_TEST_MODE): no external speech calls".into());
    }
    if !d.media_enabled {
        return Err("media is off (ORB_MEDIA=false): no call audio".into());
    }
    if d.openai_key.is_none() && !d.stt_url_given {
        return Err("speech-to-text needs OPENAI_API_KEY (or ORB_STT_BASE_URL to a self-hosted server)".into());
    }
    let kind = match d.tts {
        TtsChoice::Auto if d.elevenlabs_key.is_some() => TtsKind::ElevenLabs,
        TtsChoice::Auto | TtsChoice::OpenAi => TtsKind::OpenAi,
        TtsChoice::ElevenLabs => TtsKind::ElevenLabs,
    };
    match kind {
        TtsKind::ElevenLabs if d.elevenlabs_key.is_none() => {
            Err("ORB_TTS_PROVIDER=elevenlabs needs ELEVENLABS_API_KEY".into())
        }
        TtsKind::OpenAi if d.openai_key.is_none() && !d.tts_url_given => Err(
            "OpenAI text-to-speech needs OPENAI_API_KEY (or ORB_TTS_BASE_URL to a self-hosted server, \
             or ELEVENLABS_API_KEY)"
                .into(),
        ),
        kind => Ok(kind),
    }
}

impl VoiceArgs {
    /// Validates every voice setting (also when voice ends up off, so a bad
    /// value is never silent) and decides the [`VoicePlan`]; `env` looks up
    /// `ELEVENLABS_API_KEY`.
    pub fn resolve(
        self,
        v: &mut Validator<'_>,
        env: &dyn Fn(&str) -> Option<String>,
        ctx: VoiceContext<'_>,
    ) -> VoiceSettings {
        let reply = v.get(
            &REPLY,
            self.voice_reply,
            Rule::new("addressed, always or never", |raw| match raw {
                "addressed" => Ok(ReplyMode::Addressed),
                "always" => Ok(ReplyMode::Always),
                "never" => Ok(ReplyMode::Never),
                _ => Err(String::new()),
            }),
        );
        let names = v.get(&NAMES, self.voice_names, names_rule());
        let end_silence = v.get(&END_SILENCE, self.voice_end_silence, millis_within(50, 10_000));
        let max_utterance = v.get(&MAX_UTTERANCE, self.voice_max_utterance, millis_within(500, 300_000));
        if end_silence >= max_utterance {
            v.error(
                &END_SILENCE,
                end_silence.as_millis().to_string(),
                format!(
                    "shorter than ORB_VOICE_MAX_UTTERANCE ({} ms)",
                    max_utterance.as_millis()
                ),
            );
        }
        let stt_url = v.opt(&STT_URL, self.stt_base_url, url_rule());
        let stt_model = v.get(&STT_MODEL, self.stt_model, name_rule());
        let language = v.opt(
            &STT_LANGUAGE,
            self.stt_language,
            Rule::new("an ISO-639-1 language code, e.g. en", |raw| {
                let ok = (2..=3).contains(&raw.len()) && raw.chars().all(|c| c.is_ascii_lowercase());
                if ok { Ok(raw.to_owned()) } else { Err(String::new()) }
            }),
        );
        let tts = v.get(
            &TTS_PROVIDER,
            self.tts_provider,
            Rule::new("auto, openai or elevenlabs", |raw| match raw {
                "auto" => Ok(TtsChoice::Auto),
                "openai" => Ok(TtsChoice::OpenAi),
                "elevenlabs" => Ok(TtsChoice::ElevenLabs),
                _ => Err(String::new()),
            }),
        );
        let tts_url = v.opt(&TTS_URL, self.tts_base_url, url_rule());
        let tts_model = v.get(&TTS_MODEL, self.tts_model, name_rule());
        let tts_voice = v.get(&TTS_VOICE, self.tts_voice, name_rule());
        let eleven_url = v.get(&ELEVEN_URL, self.elevenlabs_base_url, url_rule());
        let eleven_voice = v.get(
            &ELEVEN_VOICE,
            self.elevenlabs_voice_id,
            Rule::new("1 to 64 of A-Z a-z 0-9 _ -", |raw| {
                let ok = (1..=64).contains(&raw.len())
                    && raw.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-'));
                if ok { Ok(raw.to_owned()) } else { Err(String::new()) }
            }),
        );
        let eleven_model = v.get(&ELEVEN_MODEL, self.elevenlabs_model, name_rule());
        // Like the brain's key: environment, then `.env`; never a flag.
        let eleven_key = v.optional(&ELEVEN_KEY, env(ELEVEN_KEY.env())).map(Secret::new);
        let timeout = v.get(&PROVIDER_TIMEOUT, self.provider_timeout, Rule::millis(1));
        let retries = v.number(&PROVIDER_RETRIES, self.provider_retries, 0, u64::from(MAX_RETRIES));
        let log_transcripts = v.boolean(&LOG_TRANSCRIPTS, self.log_transcripts);

        let openai_key = ctx.openai.map(|o| &o.api_key);
        let decision = Decision {
            test_mode: ctx.test_mode,
            media_enabled: ctx.media_enabled,
            openai_key,
            elevenlabs_key: eleven_key.as_ref(),
            stt_url_given: stt_url.is_some(),
            tts_url_given: tts_url.is_some(),
            tts,
        };
        let openai_url = ctx.openai.map(|o| o.base_url.clone());
        let plan = match decide(&decision) {
            Err(reason) => VoicePlan::Off { reason },
            Ok(kind) => {
                // `decide` refused a missing key unless the URL was given, and the
                // brain's settings (hence its URL) are there whenever its key is.
                let stt_base = stt_url.or_else(|| openai_url.clone());
                let tts = match (kind, eleven_key) {
                    (TtsKind::ElevenLabs, Some(api_key)) => Some(TtsSettings::ElevenLabs(ElevenLabsSettings {
                        base_url: eleven_url,
                        api_key,
                        voice_id: eleven_voice,
                        model: eleven_model,
                    })),
                    (TtsKind::ElevenLabs, None) => None,
                    (TtsKind::OpenAi, _) => tts_url.or(openai_url).map(|base_url| {
                        TtsSettings::OpenAi(OpenAiTtsSettings {
                            base_url,
                            api_key: openai_key.cloned(),
                            model: tts_model,
                            voice: tts_voice,
                        })
                    }),
                };
                match (stt_base, tts) {
                    (Some(base_url), Some(tts)) => VoicePlan::On(Box::new(ProviderSettings {
                        stt: SttSettings {
                            base_url,
                            api_key: openai_key.cloned(),
                            model: stt_model,
                            language,
                        },
                        tts,
                        call: CallPolicy {
                            timeout,
                            retries: u32::try_from(retries).unwrap_or(MAX_RETRIES),
                            base_delay: RETRY_BASE_DELAY,
                        },
                    })),
                    _ => VoicePlan::Off {
                        reason: "no base URL for a speech provider (set ORB_STT_BASE_URL / ORB_TTS_BASE_URL)".into(),
                    },
                }
            }
        };
        VoiceSettings {
            reply,
            names,
            end_silence,
            max_utterance,
            log_transcripts,
            plan,
        }
    }
}

/// A duration in milliseconds within `min..=max`.
fn millis_within(min: u64, max: u64) -> Rule<Duration> {
    Rule::new(format!("a duration in milliseconds from {min} to {max}"), move |raw| {
        let ms: u64 = raw.parse().map_err(|_| String::new())?;
        if (min..=max).contains(&ms) {
            Ok(Duration::from_millis(ms))
        } else {
            Err(format!("{ms} is out of range"))
        }
    })
}

/// An `http(s)://` URL, kept without its trailing `/` (paths are appended).
fn url_rule() -> Rule<String> {
    Rule::new("an http:// or https:// URL", |raw| {
        let scheme = raw.starts_with("http://") || raw.starts_with("https://");
        let clean = !raw.chars().any(|c| c.is_whitespace() || c.is_control());
        if scheme && clean && raw.len() <= 2048 {
            Ok(raw.trim_end_matches('/').to_owned())
        } else {
            Err(String::new())
        }
    })
}

/// A model or voice name: 1 to 100 printable characters without spaces (it
/// goes into a multipart field or a JSON string).
fn name_rule() -> Rule<String> {
    Rule::new("a name of 1 to 100 printable characters without spaces", |raw| {
        let ok = (1..=100).contains(&raw.chars().count()) && raw.chars().all(|c| !c.is_whitespace() && !c.is_control());
        if ok { Ok(raw.to_owned()) } else { Err(String::new()) }
    })
}

/// A comma list of names, each trimmed; empty items are dropped and at least one must remain.
fn names_rule() -> Rule<Vec<String>> {
    Rule::new(
        format!("a comma list of 1 to {MAX_NAMES} names (each at most {MAX_NAME_CHARS} characters), e.g. assistant,AI"),
        |raw| {
            let names: Vec<String> = raw
                .split(',')
                .map(str::trim)
                .filter(|n| !n.is_empty())
                .map(str::to_owned)
                .collect();
            let fits = names
                .iter()
                .all(|n| n.chars().count() <= MAX_NAME_CHARS && !n.contains(char::is_control));
            if !names.is_empty() && names.len() <= MAX_NAMES && fits {
                Ok(names)
            } else {
                Err(String::new())
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use shared::settings::DotEnv;

    use super::*;

    fn openai() -> OpenAiSettings {
        OpenAiSettings {
            base_url: "https://brain.example/v1".into(),
            api_key: Secret::new("sk-brain"),
            model: "m".into(),
            timeout: Duration::from_secs(1),
        }
    }

    /// Resolves `args` outside test mode with media on and the brain's key.
    fn resolve_in(
        args: VoiceArgs,
        env: &[(&str, &str)],
        dotenv: &[(&str, &str)],
        ctx: VoiceContext<'_>,
    ) -> (VoiceSettings, Vec<String>) {
        let dotenv = DotEnv::from_pairs(dotenv.iter().copied());
        let mut v = Validator::new(&dotenv);
        let env: Vec<(String, String)> = env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        let lookup = move |k: &str| env.iter().find(|(name, _)| name == k).map(|(_, v)| v.clone());
        let settings = args.resolve(&mut v, &lookup, ctx);
        let errors = v
            .finish()
            .err()
            .map(|e| e.0.iter().map(ToString::to_string).collect())
            .unwrap_or_default();
        (settings, errors)
    }

    fn resolve(args: VoiceArgs, env: &[(&str, &str)]) -> (VoiceSettings, Vec<String>) {
        let brain = openai();
        let ctx = VoiceContext {
            test_mode: false,
            media_enabled: true,
            openai: Some(&brain),
        };
        resolve_in(args, env, &[], ctx)
    }

    fn on(settings: &VoiceSettings) -> &ProviderSettings {
        match &settings.plan {
            VoicePlan::On(p) => p,
            VoicePlan::Off { reason } => panic!("voice off: {reason}"),
        }
    }

    #[test]
    fn defaults_apply_and_use_the_brains_url_and_key() {
        let (s, errors) = resolve(VoiceArgs::default(), &[]);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(s.reply, ReplyMode::Addressed);
        assert_eq!(s.names, ["assistant", "AI"]);
        assert_eq!(s.end_silence, Duration::from_millis(700));
        assert_eq!(s.max_utterance, Duration::from_millis(15_000));
        assert!(!s.log_transcripts);
        let p = on(&s);
        assert_eq!(
            p.stt,
            SttSettings {
                base_url: "https://brain.example/v1".into(),
                api_key: Some(Secret::new("sk-brain")),
                model: "whisper-1".into(),
                language: None,
            }
        );
        assert_eq!(
            p.tts,
            TtsSettings::OpenAi(OpenAiTtsSettings {
                base_url: "https://brain.example/v1".into(),
                api_key: Some(Secret::new("sk-brain")),
                model: "gpt-4o-mini-tts".into(),
                voice: "alloy".into(),
            })
        );
        assert_eq!(p.call.timeout, Duration::from_millis(10_000));
        assert_eq!((p.call.retries, p.call.attempts()), (2, 3));
    }

    #[test]
    fn every_declaration_has_its_own_names_and_a_flag_unless_it_is_a_key() {
        let mut envs: Vec<&str> = SETTINGS.iter().map(|s| s.env()).collect();
        envs.sort_unstable();
        envs.dedup();
        assert_eq!(envs.len(), SETTINGS.len(), "{envs:?}");
        for setting in SETTINGS {
            let is_key = setting.env().ends_with("_API_KEY");
            assert_eq!(setting.key.flag.is_none(), is_key, "{}", setting.env());
        }
    }

    #[test]
    fn given_values_are_parsed() {
        let args = VoiceArgs {
            voice_reply: Some("always".into()),
            voice_names: Some(" Coach Bot , , orb ".into()),
            voice_end_silence: Some("400".into()),
            voice_max_utterance: Some("20000".into()),
            stt_base_url: Some("http://127.0.0.1:9/v1/".into()),
            stt_model: Some("large-v3".into()),
            stt_language: Some("fr".into()),
            tts_base_url: Some("http://127.0.0.1:8/v1".into()),
            tts_voice: Some("nova".into()),
            provider_timeout: Some("2500".into()),
            provider_retries: Some("0".into()),
            log_transcripts: Some("true".into()),
            ..VoiceArgs::default()
        };
        let (s, errors) = resolve(args, &[]);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(s.reply, ReplyMode::Always);
        assert_eq!(s.names, ["Coach Bot", "orb"], "trimmed, empty items dropped");
        assert_eq!(
            (s.end_silence, s.max_utterance),
            (Duration::from_millis(400), Duration::from_millis(20_000))
        );
        assert!(s.log_transcripts);
        let p = on(&s);
        assert_eq!(p.stt.base_url, "http://127.0.0.1:9/v1", "trailing / dropped");
        assert_eq!(
            (p.stt.model.as_str(), p.stt.language.as_deref()),
            ("large-v3", Some("fr"))
        );
        let TtsSettings::OpenAi(tts) = &p.tts else {
            panic!("openai tts")
        };
        assert_eq!(
            (tts.base_url.as_str(), tts.voice.as_str()),
            ("http://127.0.0.1:8/v1", "nova")
        );
        assert_eq!((p.call.timeout, p.call.attempts()), (Duration::from_millis(2500), 1));
    }

    #[test]
    fn elevenlabs_is_picked_by_auto_when_its_key_is_set() {
        let (s, errors) = resolve(VoiceArgs::default(), &[("ELEVENLABS_API_KEY", "xi-secret")]);
        assert!(errors.is_empty(), "{errors:?}");
        let TtsSettings::ElevenLabs(eleven) = &on(&s).tts else {
            panic!("elevenlabs")
        };
        assert_eq!(eleven.base_url, "https://api.elevenlabs.io");
        assert_eq!(eleven.voice_id, "21m00Tcm4TlvDq8ikWAM");
        assert_eq!(eleven.model, "eleven_flash_v2_5");
        assert_eq!(eleven.api_key.expose(), "xi-secret");
        let shown = format!("{s:?}");
        assert!(
            !shown.contains("xi-secret") && !shown.contains("sk-brain"),
            "keys never in Debug: {shown}"
        );
        // Forcing OpenAI keeps it even with the ElevenLabs key set.
        let args = VoiceArgs {
            tts_provider: Some("openai".into()),
            ..VoiceArgs::default()
        };
        let (s, _) = resolve(args, &[("ELEVENLABS_API_KEY", "xi-secret")]);
        assert!(matches!(on(&s).tts, TtsSettings::OpenAi(_)));
    }

    #[test]
    fn the_elevenlabs_key_is_read_from_dotenv_but_never_from_a_flag() {
        let brain = openai();
        let ctx = VoiceContext {
            test_mode: false,
            media_enabled: true,
            openai: Some(&brain),
        };
        let (s, _) = resolve_in(VoiceArgs::default(), &[], &[("ELEVENLABS_API_KEY", "xi-file")], ctx);
        assert!(matches!(on(&s).tts, TtsSettings::ElevenLabs(_)));
        let help = <Wrapper as clap::CommandFactory>::command()
            .render_long_help()
            .to_string();
        assert!(
            !help.contains("--elevenlabs-api-key") && !help.contains("env: ELEVENLABS_API_KEY"),
            "{help}"
        );
        assert!(
            help.contains("ORB_PROVIDER_RETRIES") && help.contains("[default: 2]"),
            "{help}"
        );
    }

    /// The voice flags as the orb's command line flattens them.
    #[derive(clap::Parser)]
    struct Wrapper {
        #[command(flatten)]
        voice: VoiceArgs,
    }

    #[test]
    fn flags_parse_into_the_args() {
        let w = <Wrapper as clap::Parser>::try_parse_from([
            "gpu-orb",
            "--voice-reply=never",
            "--provider-retries",
            "4",
            "--log-transcripts",
        ])
        .expect("parse");
        let (s, errors) = resolve(w.voice, &[]);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(s.reply, ReplyMode::Never);
        assert!(s.log_transcripts);
        assert_eq!(on(&s).call.attempts(), 5);
    }

    #[test]
    fn every_bad_value_names_its_variable() {
        let args = VoiceArgs {
            voice_reply: Some("sometimes".into()),
            voice_names: Some(" , ".into()),
            voice_end_silence: Some("10".into()),
            voice_max_utterance: Some("999999".into()),
            stt_base_url: Some("ftp://x".into()),
            stt_model: Some("two words".into()),
            stt_language: Some("English".into()),
            tts_provider: Some("polly".into()),
            tts_base_url: Some("localhost:8000".into()),
            elevenlabs_base_url: Some("api.elevenlabs.io".into()),
            elevenlabs_voice_id: Some("../x".into()),
            provider_timeout: Some("0".into()),
            provider_retries: Some("6".into()),
            log_transcripts: Some("maybe".into()),
            ..VoiceArgs::default()
        };
        let (_, errors) = resolve(args, &[]);
        let names = [
            "ORB_VOICE_REPLY (--voice-reply)",
            "ORB_VOICE_NAMES",
            "ORB_VOICE_END_SILENCE",
            "ORB_VOICE_MAX_UTTERANCE",
            "ORB_STT_BASE_URL",
            "ORB_STT_MODEL",
            "ORB_STT_LANGUAGE",
            "ORB_TTS_PROVIDER",
            "ORB_TTS_BASE_URL",
            "ELEVENLABS_BASE_URL",
            "ELEVENLABS_VOICE_ID",
            "ORB_PROVIDER_TIMEOUT",
            "ORB_PROVIDER_RETRIES",
            "ORB_LOG_TRANSCRIPTS",
        ];
        assert_eq!(errors.len(), names.len(), "{errors:#?}");
        for (error, name) in errors.iter().zip(names) {
            assert!(error.starts_with(name), "{name}: {error}");
        }
    }

    #[test]
    fn end_silence_must_be_shorter_than_the_longest_utterance() {
        let args = VoiceArgs {
            voice_end_silence: Some("2000".into()),
            voice_max_utterance: Some("1000".into()),
            ..VoiceArgs::default()
        };
        let (_, errors) = resolve(args, &[]);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].starts_with("ORB_VOICE_END_SILENCE") && errors[0].contains("ORB_VOICE_MAX_UTTERANCE"),
            "{errors:?}"
        );
    }

    #[test]
    fn voice_is_off_in_test_mode_and_without_media_but_still_validated() {
        let ctx = VoiceContext {
            test_mode: true,
            media_enabled: true,
            openai: None,
        };
        let bad = VoiceArgs {
            provider_retries: Some("9".into()),
            ..VoiceArgs::default()
        };
        let (s, errors) = resolve_in(bad, &[], &[], ctx);
        assert!(matches!(&s.plan, VoicePlan::Off { reason } if reason.contains("ORB_TEST_MODE")));
        assert_eq!(errors.len(), 1, "a bad value exits 64 in test mode too: {errors:?}");
        let brain = openai();
        let ctx = VoiceContext {
            test_mode: false,
            media_enabled: false,
            openai: Some(&brain),
        };
        let (s, _) = resolve_in(VoiceArgs::default(), &[], &[], ctx);
        assert!(matches!(&s.plan, VoicePlan::Off { reason } if reason.contains("ORB_MEDIA")));
    }

    fn decision(openai: bool, eleven: bool, stt_url: bool, tts_url: bool, tts: TtsChoice) -> Result<TtsKind, String> {
        let key = Secret::new("k");
        decide(&Decision {
            test_mode: false,
            media_enabled: true,
            openai_key: openai.then_some(&key),
            elevenlabs_key: eleven.then_some(&key),
            stt_url_given: stt_url,
            tts_url_given: tts_url,
            tts,
        })
    }

    #[test]
    fn the_decision_needs_each_providers_key_or_an_explicit_url() {
        use TtsChoice::{Auto, ElevenLabs, OpenAi};
        assert_eq!(decision(true, false, false, false, Auto), Ok(TtsKind::OpenAi));
        assert_eq!(decision(true, true, false, false, Auto), Ok(TtsKind::ElevenLabs));
        assert_eq!(decision(true, true, false, false, OpenAi), Ok(TtsKind::OpenAi));
        let no_eleven = decision(true, false, false, false, ElevenLabs).expect_err("no key");
        assert!(no_eleven.contains("ELEVENLABS_API_KEY"), "{no_eleven}");
        let no_openai = decision(false, true, false, false, Auto).expect_err("no stt key");
        assert!(no_openai.contains("OPENAI_API_KEY") && no_openai.contains("ORB_STT_BASE_URL"));
        // Self-hosted: explicit URLs run without keys.
        assert_eq!(decision(false, true, true, false, Auto), Ok(TtsKind::ElevenLabs));
        assert_eq!(decision(false, false, true, true, Auto), Ok(TtsKind::OpenAi));
        let no_tts = decision(false, false, true, false, Auto).expect_err("no tts key");
        assert!(no_tts.contains("ORB_TTS_BASE_URL"), "{no_tts}");
    }

    #[test]
    fn a_self_hosted_stt_runs_without_the_openai_key() {
        let ctx = VoiceContext {
            test_mode: false,
            media_enabled: true,
            openai: None,
        };
        let args = VoiceArgs {
            stt_base_url: Some("http://10.0.0.2:8000/v1".into()),
            ..VoiceArgs::default()
        };
        let (s, errors) = resolve_in(args, &[("ELEVENLABS_API_KEY", "xi")], &[], ctx);
        assert!(errors.is_empty(), "{errors:?}");
        let p = on(&s);
        assert_eq!(
            (p.stt.base_url.as_str(), p.stt.api_key.as_ref()),
            ("http://10.0.0.2:8000/v1", None)
        );
        assert!(matches!(p.tts, TtsSettings::ElevenLabs(_)));
    }
}
