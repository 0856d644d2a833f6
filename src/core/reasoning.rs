//! Reasoning settings: effort and summary sent upstream, and how reasoning is shown to the
//! client (`REASONING_OUTPUT_MODE`).

use serde::Serialize;

use crate::core::error::ApiError;

/// The upstream's `reasoning.effort`; serialized in lower case as the Responses API spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Effort {
    None,
    Minimal,
    Low,
    Medium,
    High,
    Xhigh,
    Max,
    Ultra,
}

impl Effort {
    /// The accepted spellings, for error messages and the settings manifest.
    pub const VALUES: &'static [&'static str] = &[
        "none", "minimal", "low", "medium", "high", "xhigh", "max", "ultra",
    ];

    /// Case-insensitive, surrounding blanks ignored; `None` outside [`Effort::VALUES`]. Also
    /// reads model-name suffixes (`gpt-5.5-high`).
    pub fn parse(raw: &str) -> Option<Self> {
        Some(match raw.trim().to_ascii_lowercase().as_str() {
            "none" => Self::None,
            "minimal" => Self::Minimal,
            "low" => Self::Low,
            "medium" => Self::Medium,
            "high" => Self::High,
            "xhigh" => Self::Xhigh,
            "max" => Self::Max,
            "ultra" => Self::Ultra,
            _ => return None,
        })
    }
}

/// The upstream's `reasoning.summary`; [`Summary::None`] leaves the field out of the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Summary {
    Auto,
    Concise,
    Detailed,
    None,
}

impl Summary {
    /// What a request's `reasoning.summary` accepts.
    pub const VALUES: &'static [&'static str] = &["auto", "concise", "detailed", "none"];
    /// What `REASONING_SUMMARY` accepts: [`Summary::VALUES`] plus the `on`/`off` aliases.
    pub const SETTING_VALUES: &'static [&'static str] = &["auto", "concise", "detailed", "none", "on", "off"];

    /// Case-insensitive; `None` for anything outside [`Summary::VALUES`].
    pub fn parse(raw: &str) -> Option<Self> {
        Some(match raw.trim().to_ascii_lowercase().as_str() {
            "auto" => Self::Auto,
            "concise" => Self::Concise,
            "detailed" => Self::Detailed,
            "none" => Self::None,
            _ => return None,
        })
    }

    /// The variable also takes the `on`/`off` aliases the original documented.
    pub fn parse_setting(raw: &str) -> Option<Self> {
        match raw.trim().to_ascii_lowercase().as_str() {
            "on" => Some(Self::Auto),
            "off" => Some(Self::None),
            other => Self::parse(other),
        }
    }
}

/// How reasoning reaches a chat client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputMode {
    /// `delta.reasoning_content` / `message.reasoning_content`.
    OpenAi,
    /// `<think>…</think>` inside the content.
    Tagged,
    /// `reasoning: {content: [{type: "text", text}]}`.
    O3,
    /// `reasoning_content` without paragraph separators.
    R1,
    Hidden,
}

impl OutputMode {
    /// What `REASONING_OUTPUT_MODE` accepts; `all` serves `/v1/*` as `openai` and adds the
    /// prefixed route families.
    pub const SETTING_VALUES: &'static [&'static str] = &["openai", "tagged", "o3", "r1", "hidden", "all"];
    /// The route prefixes that exist with `REASONING_OUTPUT_MODE=all`.
    pub const PREFIXES: [(&'static str, Self); 5] = [
        ("tagged", Self::Tagged),
        ("r1", Self::R1),
        ("o3", Self::O3),
        ("openai", Self::OpenAi),
        ("hidden", Self::Hidden),
    ];

    /// Returns the mode for `/v1/*` and whether the prefixed families exist.
    pub fn parse_setting(raw: &str) -> Option<(Self, bool)> {
        let value = raw.trim().to_ascii_lowercase();
        if value == "all" {
            return Some((Self::OpenAi, true));
        }
        Self::PREFIXES
            .iter()
            .find(|(name, _)| *name == value)
            .map(|(_, mode)| (*mode, false))
    }
}

/// What goes into the upstream `reasoning` object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ReasoningParam {
    pub effort: Effort,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub summary: Option<Summary>,
    /// `all_turns` in the lite request shape: the backend keeps every turn's reasoning.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub context: Option<&'static str>,
}

/// The reasoning fields of a request body.
#[derive(Debug, Default, Clone, Copy)]
pub struct ReasoningRequest<'a> {
    /// `reasoning.effort`
    pub object_effort: Option<&'a str>,
    /// `reasoning.summary`
    pub object_summary: Option<&'a str>,
    /// top-level `reasoning_effort`
    pub reasoning_effort: Option<&'a str>,
}

/// The effort the body names: `reasoning.effort` > `reasoning_effort`; an unknown value is a
/// 400 naming its parameter. Then come the model suffix and `REASONING_EFFORT`, and the
/// catalogue fits the result to the model (`catalogue::rules::for_request`).
pub fn explicit_effort(request: &ReasoningRequest<'_>) -> Result<Option<Effort>, ApiError> {
    Ok(match (request.object_effort, request.reasoning_effort) {
        (Some(raw), _) => Some(parse_effort(raw, "reasoning.effort")?),
        (None, Some(raw)) => Some(parse_effort(raw, "reasoning_effort")?),
        (None, None) => None,
    })
}

/// `reasoning.summary`, else `REASONING_SUMMARY`; `None` leaves it out of the request.
pub fn summary(
    request: &ReasoningRequest<'_>,
    default_summary: Summary,
) -> Result<Option<Summary>, ApiError> {
    let summary = match request.object_summary {
        Some(raw) => Summary::parse(raw).ok_or_else(|| {
            ApiError::invalid_param(
                "reasoning.summary",
                format!(
                    "Invalid reasoning.summary {raw:?}; use one of {}.",
                    Summary::VALUES.join(", ")
                ),
            )
        })?,
        None => default_summary,
    };
    Ok((summary != Summary::None).then_some(summary))
}

fn parse_effort(raw: &str, param: &str) -> Result<Effort, ApiError> {
    Effort::parse(raw).ok_or_else(|| {
        ApiError::invalid_param(
            param,
            format!(
                "Invalid {param} {raw:?}; use one of {}.",
                Effort::VALUES.join(", ")
            ),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_object_effort_beats_the_top_level_one() {
        let cases: &[(ReasoningRequest, Option<Effort>)] = &[
            (ReasoningRequest::default(), None),
            (
                ReasoningRequest {
                    reasoning_effort: Some("minimal"),
                    ..Default::default()
                },
                Some(Effort::Minimal),
            ),
            (
                ReasoningRequest {
                    object_effort: Some("XHIGH"),
                    reasoning_effort: Some("minimal"),
                    ..Default::default()
                },
                Some(Effort::Xhigh),
            ),
            (
                ReasoningRequest {
                    object_summary: Some("concise"),
                    ..Default::default()
                },
                None,
            ),
        ];
        for (request, expected) in cases {
            assert_eq!(explicit_effort(request), Ok(*expected), "{request:?}");
        }
    }

    #[test]
    fn summary_none_is_omitted_and_invalid_values_are_400() {
        let none = ReasoningRequest {
            object_summary: Some("none"),
            ..Default::default()
        };
        assert_eq!(summary(&none, Summary::Auto), Ok(None));
        assert_eq!(
            summary(&ReasoningRequest::default(), Summary::Concise),
            Ok(Some(Summary::Concise))
        );
        let err = explicit_effort(&ReasoningRequest {
            reasoning_effort: Some("extreme"),
            ..Default::default()
        })
        .err()
        .map(|e| (e.status, e.param));
        assert_eq!(err, Some((400, Some("reasoning_effort".to_string()))));
        let loud = ReasoningRequest {
            object_summary: Some("loud"),
            ..Default::default()
        };
        assert!(summary(&loud, Summary::Auto).is_err());
    }

    #[test]
    fn output_mode_settings() {
        assert_eq!(
            OutputMode::parse_setting(" Tagged "),
            Some((OutputMode::Tagged, false))
        );
        assert_eq!(OutputMode::parse_setting("ALL"), Some((OutputMode::OpenAi, true)));
        assert_eq!(OutputMode::parse_setting("hide"), None);
        assert_eq!(Summary::parse_setting("on"), Some(Summary::Auto));
    }
}
