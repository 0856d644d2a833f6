//! From the model a client asked for to what goes on the wire, by the catalogue entry: the
//! upstream slug, the effort, the service tier, the request shape (lite or classic), the
//! default verbosity and whether tool calls may run in parallel. Chat, completions and the
//! Responses route all call [`for_request`], so a model behaves the same on every route.

use crate::core::catalogue::aliases::{self, Target};
use crate::core::catalogue::settings::ModelSettings;
use crate::core::catalogue::{Catalogue, ModelEntry};
use crate::core::reasoning::Effort;

/// The model when the catalogue has no listed entry at all (it always has one: an empty
/// catalogue is refused when parsed).
const LAST_RESORT_MODEL: &str = "gpt-5.5";

/// The effort when neither the client, `REASONING_EFFORT` nor the catalogue names one.
pub const FALLBACK_EFFORT: Effort = Effort::Low;

/// What the client asked for, as read from its body.
#[derive(Debug, Clone, Copy)]
pub struct ModelRequest<'a> {
    /// `model`, as sent (suffixes included).
    pub model: Option<&'a str>,
    /// The client's explicit effort (`reasoning.effort`, else `reasoning_effort`); it beats an
    /// effort suffix of the model name.
    pub effort: Option<Effort>,
    /// `REASONING_EFFORT`: the effort when the client gives none at all; `None` takes the
    /// entry's `default_reasoning_level`, as the official client does.
    pub default_effort: Option<Effort>,
    /// `service_tier`, as sent.
    pub service_tier: Option<&'a str>,
}

/// Whether the client's `parallel_tool_calls` is honoured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParallelToolCalls {
    /// The client's value, `true` when it sends none.
    Client,
    /// Always `false`: the lite shape, or a model the catalogue says cannot.
    Off,
}

impl ParallelToolCalls {
    /// `parallel_tool_calls` on the wire for the client's value.
    pub fn apply(self, client: Option<bool>) -> bool {
        match self {
            Self::Client => client.unwrap_or(true),
            Self::Off => false,
        }
    }
}

/// The per-model decisions for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelRules {
    /// The upstream model id.
    pub slug: String,
    /// The catalogue has an entry for `slug`; without one every rule below is the client's
    /// request as it came (plus `ultra` → `max`).
    pub known: bool,
    /// `reasoning.effort` on the wire.
    pub effort: Effort,
    /// `service_tier` on the wire; `None` leaves the field out.
    pub service_tier: Option<String>,
    /// Send the lite request shape (with its header).
    pub lite: bool,
    /// `text.verbosity` when the client sets none.
    pub default_verbosity: Option<&'static str>,
    pub parallel_tool_calls: ParallelToolCalls,
}

/// A requested model resolved against the catalogue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    pub slug: String,
    pub suffix_effort: Option<Effort>,
    /// A `-fast` suffix: the `priority` service tier.
    pub fast: bool,
}

/// Every rule for one request (see the module documentation).
pub fn for_request(
    catalogue: &Catalogue,
    settings: &ModelSettings,
    request: &ModelRequest<'_>,
) -> ModelRules {
    let resolved = resolve(catalogue, settings, request.model);
    let entry = catalogue.find(&resolved.slug);
    let asked = request
        .effort
        .or(resolved.suffix_effort)
        .or(request.default_effort)
        .or(entry.and_then(|e| e.default_effort))
        .unwrap_or(FALLBACK_EFFORT);
    let effort = match entry {
        Some(entry) => clamp(asked, &entry.supported_efforts),
        None => asked,
    };
    let lite = entry.is_some_and(|e| e.lite);
    ModelRules {
        known: entry.is_some(),
        effort: on_the_wire(effort),
        service_tier: service_tier(entry, request.service_tier, resolved.fast),
        lite,
        default_verbosity: entry
            .filter(|e| e.supports_verbosity)
            .and_then(|e| verbosity(e.default_verbosity.as_deref()?)),
        parallel_tool_calls: match entry {
            Some(e) if lite || !e.supports_parallel_tool_calls => ParallelToolCalls::Off,
            _ => ParallelToolCalls::Client,
        },
        slug: resolved.slug,
    }
}

/// The upstream model for a request: suffixes split off, a known slug as it is, a retired id
/// through the alias table, the catalogue's default when missing, an unknown id lower-cased
/// and passed on (the backend's own error then tells the client). `DEBUG_MODEL` replaces the
/// id but keeps the suffixes.
pub fn resolve(catalogue: &Catalogue, settings: &ModelSettings, requested: Option<&str>) -> Resolved {
    let requested = requested.map(str::trim).filter(|m| !m.is_empty());
    let (base, suffix_effort, fast) = match requested {
        Some(name) => split_suffixes(catalogue, name),
        None => ("", None, false),
    };
    let slug = match (&settings.forced, requested) {
        (Some(forced), _) => forced.clone(),
        (None, None) => default_slug(catalogue),
        (None, Some(_)) => canonical(catalogue, base),
    };
    Resolved {
        slug,
        suffix_effort,
        fast,
    }
}

fn default_slug(catalogue: &Catalogue) -> String {
    catalogue.default_slug().unwrap_or(LAST_RESORT_MODEL).to_string()
}

fn canonical(catalogue: &Catalogue, base: &str) -> String {
    let lower = base.to_ascii_lowercase();
    if catalogue.find(&lower).is_some() {
        return lower;
    }
    match aliases::target(&lower) {
        Some(Target::Slug(slug)) if catalogue.find(slug).is_some() => slug.to_string(),
        Some(_) => default_slug(catalogue),
        None => lower,
    }
}

/// A model id the rules know: a catalogue slug or a retired id (any case).
fn is_known(catalogue: &Catalogue, name: &str) -> bool {
    let lower = name.trim_end().to_ascii_lowercase();
    catalogue.find(&lower).is_some() || aliases::target(&lower).is_some()
}

/// `gpt-5.5-high` → (`gpt-5.5`, high); `gpt-5.5-fast`, `gpt-5.5-fast-high` and
/// `gpt-5.5-high-fast` also select the fast tier. An effort suffix always splits off (as it
/// always did); `-fast` only when what remains is a known model, so an unknown id that ends in
/// `-fast` reaches the backend whole. A name that is itself known is never split.
fn split_suffixes<'n>(catalogue: &Catalogue, name: &'n str) -> (&'n str, Option<Effort>, bool) {
    if is_known(catalogue, name) {
        return (name, None, false);
    }
    if let Some((base, effort)) = split_effort(name) {
        return match strip_fast(base).filter(|inner| is_known(catalogue, inner)) {
            Some(inner) => (inner, Some(effort), true),
            None => (base, Some(effort), false),
        };
    }
    if let Some(base) = strip_fast(name) {
        if is_known(catalogue, base) {
            return (base, None, true);
        }
        if let Some((inner, effort)) = split_effort(base).filter(|(inner, _)| is_known(catalogue, inner)) {
            return (inner, Some(effort), true);
        }
    }
    (name, None, false)
}

/// The separators of a model suffix: `gpt-5.5-high`, `gpt-5.5_high`, `gpt-5.5:high`.
const SEPARATORS: [char; 3] = ['-', '_', ':'];

fn split_effort(name: &str) -> Option<(&str, Effort)> {
    let at = name.rfind(SEPARATORS)?;
    let (base, suffix) = name.split_at(at);
    let effort = suffix.get(1..).and_then(Effort::parse)?;
    // `gpt-5.5 -high`: the space is not part of the model's name.
    let base = base.trim_end();
    (!base.is_empty()).then_some((base, effort))
}

fn strip_fast(name: &str) -> Option<&str> {
    let at = name.rfind(SEPARATORS)?;
    let (base, suffix) = name.split_at(at);
    let base = base.trim_end();
    (suffix.get(1..)?.eq_ignore_ascii_case("fast") && !base.is_empty()).then_some(base)
}

/// Order of cost, for the nearest supported effort.
fn rank(effort: Effort) -> u8 {
    match effort {
        Effort::None => 0,
        Effort::Minimal => 1,
        Effort::Low => 2,
        Effort::Medium => 3,
        Effort::High => 4,
        Effort::Xhigh => 5,
        Effort::Max => 6,
        Effort::Ultra => 7,
    }
}

/// The supported effort nearest to `asked` by rank; on a tie the higher one (asking for more
/// reasoning than a model has gets its strongest, never a weaker compromise). An entry that
/// lists no effort takes `asked` as it is.
pub fn clamp(asked: Effort, supported: &[Effort]) -> Effort {
    supported
        .iter()
        .copied()
        .min_by_key(|s| (rank(*s).abs_diff(rank(asked)), u8::MAX.saturating_sub(rank(*s))))
        .unwrap_or(asked)
}

/// The backend still expects `max` where a client (and the catalogue) says `ultra`.
pub fn on_the_wire(effort: Effort) -> Effort {
    match effort {
        Effort::Ultra => Effort::Max,
        other => other,
    }
}

/// The catalogue's name of the "fast" tier.
const PRIORITY: &str = "priority";
/// The client's explicit "no tier": no catalogue default either.
const DEFAULT_TIER: &str = "default";

/// `service_tier` for the wire. An explicit tier: `fast` means `priority`, `default` means
/// none, anything else as written; kept only when the model lists it (an unknown model keeps
/// it, the backend decides). No explicit tier: `priority` for a `-fast` suffix, else the
/// entry's `default_service_tier`, as the official client does when the user chose none.
fn service_tier(entry: Option<&ModelEntry>, requested: Option<&str>, fast: bool) -> Option<String> {
    let requested = requested
        .map(|t| t.trim().to_ascii_lowercase())
        .filter(|t| !t.is_empty());
    let tier = match requested.as_deref() {
        Some(DEFAULT_TIER) => return None,
        Some("fast") => PRIORITY.to_string(),
        Some(other) => other.to_string(),
        None if fast => PRIORITY.to_string(),
        None => entry?.default_service_tier.clone()?,
    };
    match entry {
        Some(entry) if !entry.service_tiers.contains(&tier) => None,
        _ => Some(tier),
    }
}

fn verbosity(raw: &str) -> Option<&'static str> {
    match raw {
        "low" => Some("low"),
        "medium" => Some("medium"),
        "high" => Some("high"),
        _ => None,
    }
}

#[cfg(test)]
#[path = "rules_tests.rs"]
mod tests;
