//! Token usage: Responses `usage` → OpenAI `usage`, keeping cached and reasoning token details.

use serde::{Deserialize, Serialize};

/// `usage` as the Responses API reports it on the terminal event; absent counts read as 0.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct ResponsesUsage {
    #[serde(default)]
    pub input_tokens: u64,
    #[serde(default)]
    pub output_tokens: u64,
    #[serde(default)]
    pub total_tokens: Option<u64>,
    #[serde(default)]
    pub input_tokens_details: Option<InputDetails>,
    #[serde(default)]
    pub output_tokens_details: Option<OutputDetails>,
}

/// `usage.input_tokens_details`: how many input tokens the prompt cache served.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct InputDetails {
    #[serde(default)]
    pub cached_tokens: u64,
}

/// `usage.output_tokens_details`: how many output tokens went to reasoning.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct OutputDetails {
    #[serde(default)]
    pub reasoning_tokens: u64,
}

/// `usage` as OpenAI clients expect it; `total_tokens` is filled in when the upstream left it out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Usage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub total_tokens: u64,
    pub prompt_tokens_details: PromptDetails,
    pub completion_tokens_details: CompletionDetails,
}

/// `usage.prompt_tokens_details`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct PromptDetails {
    pub cached_tokens: u64,
}

/// `usage.completion_tokens_details`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct CompletionDetails {
    pub reasoning_tokens: u64,
}

impl From<ResponsesUsage> for Usage {
    fn from(u: ResponsesUsage) -> Self {
        Self {
            prompt_tokens: u.input_tokens,
            completion_tokens: u.output_tokens,
            total_tokens: u
                .total_tokens
                .unwrap_or(u.input_tokens.saturating_add(u.output_tokens)),
            prompt_tokens_details: PromptDetails {
                cached_tokens: u.input_tokens_details.map_or(0, |d| d.cached_tokens),
            },
            completion_tokens_details: CompletionDetails {
                reasoning_tokens: u.output_tokens_details.map_or(0, |d| d.reasoning_tokens),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_every_field_and_fills_the_total() {
        let raw: ResponsesUsage = serde_json::from_str(
            r#"{"input_tokens":812,"input_tokens_details":{"cached_tokens":768},"output_tokens":96,"output_tokens_details":{"reasoning_tokens":64},"total_tokens":908}"#,
        )
        .unwrap_or_default();
        let usage = serde_json::to_value(Usage::from(raw)).unwrap_or_default();
        assert_eq!(
            usage,
            serde_json::json!({"prompt_tokens":812,"completion_tokens":96,"total_tokens":908,
                "prompt_tokens_details":{"cached_tokens":768},"completion_tokens_details":{"reasoning_tokens":64}})
        );
        let raw: ResponsesUsage =
            serde_json::from_str(r#"{"input_tokens":3,"output_tokens":4}"#).unwrap_or_default();
        assert_eq!(Usage::from(raw).total_tokens, 7);
    }
}
