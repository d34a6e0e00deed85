//! Turn-taking: whether the AI answers a finished utterance (`ORB_VOICE_REPLY`).
//!
//! Two humans talk to each other most of the time, so by default the AI answers only
//! an utterance that addresses it by one of its names (`ORB_VOICE_NAMES`): a name
//! counts when it appears as whole words, in any case ("Hey assistant, …", "… what do
//! you think, AI?"), not inside another word ("said", "maid").

pub use super::settings::ReplyMode;

/// Whether the AI answers `text` under `mode`, known by `names`.
pub fn should_answer(mode: ReplyMode, names: &[String], text: &str) -> bool {
    match mode {
        ReplyMode::Always => !text.trim().is_empty(),
        ReplyMode::Never => false,
        ReplyMode::Addressed => addresses(names, text),
    }
}

/// Whether `text` contains one of `names` as whole words (a name may have several words).
pub fn addresses(names: &[String], text: &str) -> bool {
    let words = words(text);
    names.iter().any(|name| {
        let name = words_of(name);
        !name.is_empty() && words.windows(name.len()).any(|w| w == name.as_slice())
    })
}

fn words(text: &str) -> Vec<String> {
    words_of(text)
}

fn words_of(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric() && c != '\'')
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> Vec<String> {
        vec!["assistant".to_owned(), "AI".to_owned(), "coach bot".to_owned()]
    }

    #[test]
    fn a_name_as_a_word_in_any_case_addresses_the_ai() {
        for text in [
            "Hey assistant, what do you think?",
            "what do you think, AI?",
            "ai: summarise please",
            "Okay Coach Bot, go on",
        ] {
            assert!(should_answer(ReplyMode::Addressed, &names(), text), "{text}");
        }
    }

    #[test]
    fn a_name_inside_another_word_or_absent_does_not() {
        for text in ["I said that already", "the maid came", "assistants are people too", ""] {
            assert!(!should_answer(ReplyMode::Addressed, &names(), text), "{text}");
        }
    }

    #[test]
    fn always_answers_any_words_and_never_answers_nothing() {
        assert!(should_answer(ReplyMode::Always, &names(), "how are you"));
        assert!(!should_answer(ReplyMode::Always, &names(), "  "));
        assert!(!should_answer(ReplyMode::Never, &names(), "assistant, help"));
    }
}
