//! SMART App Launch v2 scopes (`patient|user|system/Type.cruds?name=value`), with the v1
//! `.read`/`.write`/`.*` forms mapped onto v2 permissions.
//!
//! See <https://hl7.org/fhir/smart-app-launch/scopes-and-launch-context.html>. A scope only ever
//! narrows what the access rules allow; this module answers "does the token carry a scope for
//! this?" and leaves the rules themselves to the caller.

use std::fmt;

/// Whose data a resource scope is about: the launch patient, what the signed-in user may see, or
/// a backend system acting on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Context {
    Patient,
    User,
    System,
}

impl Context {
    /// The scope prefix, as written before the `/`.
    pub fn as_str(self) -> &'static str {
        match self {
            Context::Patient => "patient",
            Context::User => "user",
            Context::System => "system",
        }
    }

    fn parse(text: &str) -> Option<Context> {
        match text {
            "patient" => Some(Context::Patient),
            "user" => Some(Context::User),
            "system" => Some(Context::System),
            _ => None,
        }
    }
}

/// A FHIR interaction as the scope letters see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Interaction {
    /// `c`: create.
    Create,
    /// `r`: read, and also vread and instance history (they return the same resource).
    Read,
    /// `u`: update and patch.
    Update,
    /// `d`: delete.
    Delete,
    /// `s`: search, and also type history (both list many resources of a type).
    Search,
}

/// The `c r u d s` permission letters of one resource scope.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Permissions {
    pub create: bool,
    pub read: bool,
    pub update: bool,
    pub delete: bool,
    pub search: bool,
}

/// The v2 letters in the only order the specification allows.
const LETTERS: [char; 5] = ['c', 'r', 'u', 'd', 's'];

impl Permissions {
    /// Every interaction (`cruds`, v1 `*`).
    pub const ALL: Permissions = Permissions {
        create: true,
        read: true,
        update: true,
        delete: true,
        search: true,
    };

    /// Parses v2 letters (`rs`, `cud`, …: in order, no repeats, at least one) or the v1 words
    /// `read` (= `rs`), `write` (= `cud`) and `*` (= `cruds`).
    pub fn parse(text: &str) -> Option<Permissions> {
        match text {
            "read" => Some(Permissions::from_letters("rs")),
            "write" => Some(Permissions::from_letters("cud")),
            "*" => Some(Permissions::ALL),
            _ if letters_in_order(text) => Some(Permissions::from_letters(text)),
            _ => None,
        }
    }

    /// Whether these permissions cover `interaction`.
    pub fn includes(&self, interaction: Interaction) -> bool {
        match interaction {
            Interaction::Create => self.create,
            Interaction::Read => self.read,
            Interaction::Update => self.update,
            Interaction::Delete => self.delete,
            Interaction::Search => self.search,
        }
    }

    /// The interactions both sides allow.
    pub fn intersect(&self, other: &Permissions) -> Permissions {
        Permissions {
            create: self.create && other.create,
            read: self.read && other.read,
            update: self.update && other.update,
            delete: self.delete && other.delete,
            search: self.search && other.search,
        }
    }

    /// True when no interaction is allowed (such a scope grants nothing and is dropped).
    pub fn is_empty(&self) -> bool {
        *self == Permissions::default()
    }

    fn flags(&self) -> [bool; 5] {
        [
            self.create,
            self.read,
            self.update,
            self.delete,
            self.search,
        ]
    }

    /// Only called on text that `letters_in_order` accepted (or on literals).
    fn from_letters(text: &str) -> Permissions {
        Permissions {
            create: text.contains('c'),
            read: text.contains('r'),
            update: text.contains('u'),
            delete: text.contains('d'),
            search: text.contains('s'),
        }
    }
}

impl fmt::Display for Permissions {
    /// Always the v2 letters, so a narrowed scope prints in one canonical form.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (letter, on) in LETTERS.iter().zip(self.flags()) {
            if on {
                write!(f, "{letter}")?;
            }
        }
        Ok(())
    }
}

/// Strictly increasing positions in `cruds` means: only known letters, in order, no repeats.
fn letters_in_order(text: &str) -> bool {
    let mut previous: Option<usize> = None;
    for c in text.chars() {
        let Some(position) = LETTERS.iter().position(|&l| l == c) else {
            return false;
        };
        if previous.is_some_and(|p| p >= position) {
            return false;
        }
        previous = Some(position);
    }
    previous.is_some()
}

/// One resource scope, e.g. `patient/Observation.rs?category=…|laboratory`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Scope {
    pub context: Context,
    /// The resource type; `None` is the `*` wildcard.
    pub resource_type: Option<String>,
    pub permissions: Permissions,
    /// Decoded `name=value` pairs after `?`; all of them must hold (they restrict, like search
    /// parameters). Empty means no restriction.
    pub parameters: Vec<(String, String)>,
}

impl Scope {
    /// Whether this scope alone grants `interaction` on `resource_type` in `context`
    /// (parameters aside: see [`Scopes::parameters_for`]).
    pub fn grants(&self, context: Context, resource_type: &str, interaction: Interaction) -> bool {
        self.context == context
            && self
                .resource_type
                .as_deref()
                .is_none_or(|t| t == resource_type)
            && self.permissions.includes(interaction)
    }

    /// The scope both `self` and `other` allow, if any: same context, the narrower type, the
    /// common letters and the parameters of both (a conjunction, so they add up).
    fn intersect(&self, other: &Scope) -> Option<Scope> {
        if self.context != other.context {
            return None;
        }
        let resource_type = match (&self.resource_type, &other.resource_type) {
            (None, t) | (t, None) => t.clone(),
            (Some(a), Some(b)) if a == b => Some(a.clone()),
            _ => return None,
        };
        let permissions = self.permissions.intersect(&other.permissions);
        if permissions.is_empty() {
            return None;
        }
        let mut parameters = self.parameters.clone();
        for pair in &other.parameters {
            if !parameters.contains(pair) {
                parameters.push(pair.clone());
            }
        }
        Some(Scope {
            context: self.context,
            resource_type,
            permissions,
            parameters,
        })
    }
}

impl fmt::Display for Scope {
    /// The v2 form, parameters re-encoded so that the output parses back to the same scope.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let resource_type = self.resource_type.as_deref().unwrap_or("*");
        write!(
            f,
            "{}/{}.{}",
            self.context.as_str(),
            resource_type,
            self.permissions
        )?;
        for (i, (name, value)) in self.parameters.iter().enumerate() {
            let separator = if i == 0 { '?' } else { '&' };
            write!(f, "{separator}{}={}", encode(name), encode(value))?;
        }
        Ok(())
    }
}

/// The scopes that are not about resources. They are recognised so that a normal OpenID Connect
/// token parses, but grant no data access.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OtherScope {
    OpenId,
    FhirUser,
    Launch,
    LaunchPatient,
    OfflineAccess,
    OnlineAccess,
}

impl OtherScope {
    const ALL: [OtherScope; 6] = [
        OtherScope::OpenId,
        OtherScope::FhirUser,
        OtherScope::Launch,
        OtherScope::LaunchPatient,
        OtherScope::OfflineAccess,
        OtherScope::OnlineAccess,
    ];

    /// The scope as written in the claim.
    pub fn as_str(self) -> &'static str {
        match self {
            OtherScope::OpenId => "openid",
            OtherScope::FhirUser => "fhirUser",
            OtherScope::Launch => "launch",
            OtherScope::LaunchPatient => "launch/patient",
            OtherScope::OfflineAccess => "offline_access",
            OtherScope::OnlineAccess => "online_access",
        }
    }

    fn parse(text: &str) -> Option<OtherScope> {
        OtherScope::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

/// A malformed scope in a `scope` claim or a registration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid scope `{scope}`: {reason}")]
pub struct ScopeError {
    /// The scope as written.
    pub scope: String,
    pub reason: String,
}

impl ScopeError {
    fn new(scope: &str, reason: impl Into<String>) -> ScopeError {
        ScopeError {
            scope: scope.to_owned(),
            reason: reason.into(),
        }
    }
}

/// The parsed content of a `scope` claim: resource scopes (OR-ed together) and, kept apart, the
/// non-resource scopes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scopes {
    resource: Vec<Scope>,
    other: Vec<OtherScope>,
}

impl Scopes {
    /// The resource scopes, in claim order, without duplicates.
    pub fn resource_scopes(&self) -> &[Scope] {
        &self.resource
    }

    /// The non-resource scopes (`openid`, `launch/patient`, …).
    pub fn other_scopes(&self) -> &[OtherScope] {
        &self.other
    }

    /// Whether the non-resource scope `scope` is present.
    pub fn has(&self, scope: OtherScope) -> bool {
        self.other.contains(&scope)
    }

    /// True when no resource scope is present: such a token can read or write nothing.
    pub fn is_empty(&self) -> bool {
        self.resource.is_empty()
    }

    /// Whether some scope grants `interaction` on `resource_type` in `context`. A granting
    /// scope may carry parameters: ask [`Scopes::parameters_for`] before serving.
    pub fn allows(&self, context: Context, resource_type: &str, interaction: Interaction) -> bool {
        !self
            .granting(context, resource_type, interaction)
            .is_empty()
    }

    /// The parameter sets of every granting scope, one slice per scope. Empty `Vec`: nothing is
    /// granted. An empty slice among them: one scope grants without restriction. Otherwise the
    /// caller must honour at least one set (e.g. filter on `category`) or refuse.
    pub fn parameters_for(
        &self,
        context: Context,
        resource_type: &str,
        interaction: Interaction,
    ) -> Vec<&[(String, String)]> {
        self.granting(context, resource_type, interaction)
            .into_iter()
            .map(|s| s.parameters.as_slice())
            .collect()
    }

    /// Whether some granting scope has no parameters, so no filter needs to be applied.
    pub fn allows_unrestricted(
        &self,
        context: Context,
        resource_type: &str,
        interaction: Interaction,
    ) -> bool {
        self.granting(context, resource_type, interaction)
            .iter()
            .any(|s| s.parameters.is_empty())
    }

    /// The contexts used by the resource scopes (to check they fit the principal).
    pub fn contexts(&self) -> impl Iterator<Item = Context> + '_ {
        self.resource.iter().map(|s| s.context)
    }

    /// Collected rather than lazy so the result borrows only `self`, not `resource_type`.
    fn granting(
        &self,
        context: Context,
        resource_type: &str,
        interaction: Interaction,
    ) -> Vec<&Scope> {
        self.resource
            .iter()
            .filter(|s| s.grants(context, resource_type, interaction))
            .collect()
    }

    fn push_resource(&mut self, scope: Scope) {
        if !self.resource.contains(&scope) {
            self.resource.push(scope);
        }
    }

    fn push_other(&mut self, scope: OtherScope) {
        if !self.other.contains(&scope) {
            self.other.push(scope);
        }
    }
}

impl fmt::Display for Scopes {
    /// The space-separated claim form (resource scopes first, in v2 syntax).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let resource = self.resource.iter().map(|s| s.to_string());
        let other = self.other.iter().map(|s| s.as_str().to_owned());
        let all: Vec<String> = resource.chain(other).collect();
        f.write_str(&all.join(" "))
    }
}

impl<'de> serde::Deserialize<'de> for Scopes {
    /// From the claim string, so that a `[[clients]]` entry's `scopes = "…"` is validated when
    /// the configuration loads rather than at the first request.
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let claim = String::deserialize(deserializer)?;
        parse_scopes(&claim).map_err(serde::de::Error::custom)
    }
}

/// Parses a space-separated `scope` claim. Any scope that is neither a known non-resource scope
/// nor a well-formed resource scope fails the whole claim: guessing what a malformed scope meant
/// could only widen it.
pub fn parse_scopes(claim: &str) -> Result<Scopes, ScopeError> {
    let mut scopes = Scopes::default();
    for text in claim.split_ascii_whitespace() {
        match OtherScope::parse(text) {
            Some(other) => scopes.push_other(other),
            None => scopes.push_resource(parse_resource_scope(text)?),
        }
    }
    Ok(scopes)
}

/// `context/Type.perms[?params]`. The `?` is split off first because parameter values are often
/// URLs, full of `/` and `.`.
fn parse_resource_scope(text: &str) -> Result<Scope, ScopeError> {
    let (head, query) = match text.split_once('?') {
        Some((head, query)) => (head, Some(query)),
        None => (text, None),
    };
    let (context, rest) = head
        .split_once('/')
        .ok_or_else(|| ScopeError::new(text, "not a known scope"))?;
    let context = Context::parse(context)
        .ok_or_else(|| ScopeError::new(text, "context must be patient, user or system"))?;
    let (resource_type, permissions) = rest
        .split_once('.')
        .ok_or_else(|| ScopeError::new(text, "expected Type.permissions after the context"))?;
    Ok(Scope {
        context,
        resource_type: parse_resource_type(text, resource_type)?,
        permissions: Permissions::parse(permissions).ok_or_else(|| {
            ScopeError::new(
                text,
                "permissions must be letters of `cruds` in that order without repeats, or read, write, *",
            )
        })?,
        parameters: match query {
            Some(query) => parse_parameters(text, query)?,
            None => Vec::new(),
        },
    })
}

/// `*` or a FHIR resource type name (a capital letter, then letters and digits).
fn parse_resource_type(scope: &str, text: &str) -> Result<Option<String>, ScopeError> {
    if text == "*" {
        return Ok(None);
    }
    let mut chars = text.chars();
    let well_formed = chars.next().is_some_and(|c| c.is_ascii_uppercase())
        && chars.all(|c| c.is_ascii_alphanumeric());
    if well_formed {
        Ok(Some(text.to_owned()))
    } else {
        Err(ScopeError::new(
            scope,
            format!("`{text}` is not a resource type"),
        ))
    }
}

/// `name=value&…`, each side decoded like a URL query string.
fn parse_parameters(scope: &str, query: &str) -> Result<Vec<(String, String)>, ScopeError> {
    query
        .split('&')
        .map(|pair| {
            let (name, value) = pair
                .split_once('=')
                .filter(|(name, _)| !name.is_empty())
                .ok_or_else(|| ScopeError::new(scope, "parameters must be name=value"))?;
            let decode = |s| decode(s).ok_or_else(|| ScopeError::new(scope, "bad %-encoding"));
            Ok((decode(name)?, decode(value)?))
        })
        .collect()
}

/// Query-string decoding: `+` is a space, `%XX` a byte; the result must be UTF-8.
fn decode(text: &str) -> Option<String> {
    let mut bytes = Vec::with_capacity(text.len());
    let mut input = text.bytes();
    while let Some(b) = input.next() {
        match b {
            b'+' => bytes.push(b' '),
            b'%' => {
                let high = hex_value(input.next()?)?;
                let low = hex_value(input.next()?)?;
                bytes.push(high << 4 | low);
            }
            _ => bytes.push(b),
        }
    }
    String::from_utf8(bytes).ok()
}

fn hex_value(digit: u8) -> Option<u8> {
    char::from(digit).to_digit(16).map(|d| d as u8)
}

/// Percent-encodes what would break the scope syntax or the claim (space, `&`, `=`, `?`, `%`,
/// `+`, anything non-ASCII or control); keeps `:/|.` readable since system URLs are common.
fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        let keep = b.is_ascii_graphic() && !matches!(b, b'&' | b'=' | b'?' | b'%' | b'+');
        if keep {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// What both the token and the registration allow: each token scope intersected with each
/// registered scope. A token can therefore never carry more than its client was registered for,
/// whatever it asks. Non-resource scopes survive only if both sides have them.
pub fn narrow(token: &Scopes, registered: &Scopes) -> Scopes {
    let mut narrowed = Scopes::default();
    for asked in &token.resource {
        for allowed in &registered.resource {
            if let Some(scope) = asked.intersect(allowed) {
                narrowed.push_resource(scope);
            }
        }
    }
    for other in &token.other {
        if registered.has(*other) {
            narrowed.push_other(*other);
        }
    }
    narrowed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(claim: &str) -> Scopes {
        parse_scopes(claim).expect(claim)
    }

    fn one(claim: &str) -> Scope {
        let scopes = parse(claim);
        assert_eq!(scopes.resource_scopes().len(), 1, "{claim}");
        scopes.resource_scopes()[0].clone()
    }

    fn perms(letters: &str) -> Permissions {
        Permissions::parse(letters).expect(letters)
    }

    fn error(claim: &str) -> ScopeError {
        parse_scopes(claim).expect_err(claim)
    }

    #[test]
    fn parses_v2_resource_scopes() {
        let scope = one("patient/DocumentReference.rs");
        assert_eq!(scope.context, Context::Patient);
        assert_eq!(scope.resource_type.as_deref(), Some("DocumentReference"));
        assert_eq!(
            scope.permissions,
            Permissions {
                read: true,
                search: true,
                ..Permissions::default()
            }
        );
        assert!(scope.parameters.is_empty());
        assert_eq!(one("user/*.cruds").permissions, Permissions::ALL);
        assert_eq!(one("user/*.cruds").resource_type, None);
        let binary = one("system/Binary.c");
        assert_eq!(binary.context, Context::System);
        assert!(binary.permissions.create && !binary.permissions.read);
    }

    #[test]
    fn maps_v1_permissions() {
        assert_eq!(one("patient/Observation.read").permissions, perms("rs"));
        assert_eq!(one("user/Observation.write").permissions, perms("cud"));
        assert_eq!(one("system/*.*").permissions, Permissions::ALL);
    }

    #[test]
    fn refuses_letters_out_of_order_repeated_unknown_or_missing() {
        for claim in ["user/*.rc", "user/*.rr", "user/*.rx", "user/*.", "user/*.R"] {
            let e = error(claim);
            assert_eq!(e.scope, claim);
            assert!(e.reason.contains("cruds"), "{e}");
        }
    }

    #[test]
    fn refuses_malformed_scopes_naming_them() {
        for (claim, bad) in [
            ("openid profile", "profile"),
            ("patient/Observation", "patient/Observation"),
            ("admin/Observation.rs", "admin/Observation.rs"),
            ("patient/observation.rs", "patient/observation.rs"),
            ("patient/.rs", "patient/.rs"),
            ("patient/Obs-ervation.rs", "patient/Obs-ervation.rs"),
            ("patient/Observation.rs?", "patient/Observation.rs?"),
            ("patient/Observation.rs?=x", "patient/Observation.rs?=x"),
            (
                "patient/Observation.rs?category",
                "patient/Observation.rs?category",
            ),
            (
                "patient/Observation.rs?a=%zz",
                "patient/Observation.rs?a=%zz",
            ),
            (
                "patient/Observation.rs?a=%ff",
                "patient/Observation.rs?a=%ff",
            ),
            ("launch/encounter", "launch/encounter"),
        ] {
            let e = error(claim);
            assert_eq!(e.scope, bad, "{claim}");
            assert!(e.to_string().contains(bad), "{e}");
        }
    }

    #[test]
    fn keeps_non_resource_scopes_apart() {
        let scopes =
            parse("openid fhirUser launch launch/patient offline_access online_access user/*.rs");
        assert_eq!(scopes.other_scopes(), &OtherScope::ALL);
        assert_eq!(scopes.resource_scopes().len(), 1);
        assert!(scopes.has(OtherScope::LaunchPatient));
        assert!(parse("openid fhirUser").is_empty());
    }

    #[test]
    fn tolerates_extra_whitespace_and_duplicates() {
        let scopes = parse("  user/*.rs\t user/*.rs  openid openid ");
        assert_eq!(scopes.resource_scopes().len(), 1);
        assert_eq!(scopes.other_scopes(), &[OtherScope::OpenId]);
        assert_eq!(parse(""), Scopes::default());
    }

    #[test]
    fn decodes_parameters() {
        let scope = one(
            "patient/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|laboratory",
        );
        assert_eq!(scope.resource_type.as_deref(), Some("Observation"));
        assert_eq!(
            scope.parameters,
            vec![(
                "category".to_owned(),
                "http://terminology.hl7.org/CodeSystem/observation-category|laboratory".to_owned()
            )]
        );
        let scope = one("user/DocumentReference.r?type=a%7Cb&x%3Dy=hello+world%C3%A9&empty=");
        assert_eq!(
            scope.parameters,
            vec![
                ("type".to_owned(), "a|b".to_owned()),
                ("x=y".to_owned(), "hello worldé".to_owned()),
                ("empty".to_owned(), String::new()),
            ]
        );
    }

    #[test]
    fn display_round_trips() {
        for claim in [
            "patient/Observation.rs?category=http://x.org/cs|lab&x%3Dy=a+b%26c",
            "user/*.cruds openid launch/patient",
            "system/Binary.c",
        ] {
            let scopes = parse(claim);
            assert_eq!(parse(&scopes.to_string()), scopes, "{scopes}");
        }
        assert_eq!(parse("user/Patient.read").to_string(), "user/Patient.rs");
    }

    #[test]
    fn allows_by_context_type_and_letter() {
        let scopes = parse("patient/Observation.rs user/DocumentReference.c");
        assert!(scopes.allows(Context::Patient, "Observation", Interaction::Read));
        assert!(scopes.allows(Context::Patient, "Observation", Interaction::Search));
        assert!(!scopes.allows(Context::Patient, "Observation", Interaction::Create));
        assert!(!scopes.allows(Context::User, "Observation", Interaction::Read));
        assert!(!scopes.allows(Context::Patient, "Condition", Interaction::Read));
        assert!(scopes.allows(Context::User, "DocumentReference", Interaction::Create));
        assert!(!scopes.allows(Context::User, "DocumentReference", Interaction::Update));
        assert!(!scopes.allows(Context::User, "DocumentReference", Interaction::Delete));
    }

    #[test]
    fn wildcard_covers_every_type() {
        let scopes = parse("system/*.ud");
        for resource_type in ["Patient", "Binary", "DocumentReference"] {
            assert!(scopes.allows(Context::System, resource_type, Interaction::Update));
            assert!(scopes.allows(Context::System, resource_type, Interaction::Delete));
            assert!(!scopes.allows(Context::System, resource_type, Interaction::Read));
        }
    }

    #[test]
    fn parameters_of_granting_scopes() {
        let scopes = parse(
            "patient/Observation.rs?category=laboratory patient/Observation.s?category=vital-signs patient/Condition.rs",
        );
        let sets = scopes.parameters_for(Context::Patient, "Observation", Interaction::Search);
        assert_eq!(sets.len(), 2);
        assert_eq!(sets[0], [("category".to_owned(), "laboratory".to_owned())]);
        assert_eq!(sets[1], [("category".to_owned(), "vital-signs".to_owned())]);
        assert_eq!(
            scopes
                .parameters_for(Context::Patient, "Observation", Interaction::Read)
                .len(),
            1
        );
        assert!(!scopes.allows_unrestricted(Context::Patient, "Observation", Interaction::Search));
        assert!(scopes.allows(Context::Patient, "Observation", Interaction::Search));
        assert!(scopes.allows_unrestricted(Context::Patient, "Condition", Interaction::Read));
        assert!(scopes
            .parameters_for(Context::Patient, "Patient", Interaction::Read)
            .is_empty());
    }

    #[test]
    fn narrow_intersects_types_letters_and_contexts() {
        let token = parse("system/*.cruds system/Binary.r patient/Observation.rs");
        let registered = parse("system/DocumentReference.cr system/Binary.cs");
        let narrowed = narrow(&token, &registered);
        assert_eq!(
            narrowed.to_string(),
            "system/DocumentReference.cr system/Binary.cs"
        );
        assert!(!narrowed.allows(Context::System, "Binary", Interaction::Read));
        assert!(!narrowed.allows(Context::Patient, "Observation", Interaction::Read));
    }

    #[test]
    fn narrow_never_widens() {
        let token = parse("user/Observation.r");
        let registered = parse("user/*.cruds");
        assert_eq!(narrow(&token, &registered), token);
        assert!(narrow(&token, &parse("user/Condition.r")).is_empty());
        assert!(narrow(&token, &parse("user/Observation.s")).is_empty());
        assert!(narrow(&token, &Scopes::default()).is_empty());
    }

    #[test]
    fn narrow_adds_parameters_up() {
        let token = parse("patient/Observation.rs?category=laboratory");
        let registered = parse("patient/*.rs?status=final");
        let narrowed = narrow(&token, &registered);
        assert_eq!(
            narrowed.resource_scopes()[0].parameters,
            vec![
                ("category".to_owned(), "laboratory".to_owned()),
                ("status".to_owned(), "final".to_owned()),
            ]
        );
        let same = narrow(&token, &token);
        assert_eq!(same, token);
    }

    #[test]
    fn narrow_keeps_only_shared_non_resource_scopes() {
        let narrowed = narrow(
            &parse("openid offline_access user/*.rs"),
            &parse("openid user/*.rs"),
        );
        assert_eq!(narrowed.other_scopes(), &[OtherScope::OpenId]);
    }

    #[test]
    fn deserializes_from_a_string() {
        let scopes: Scopes = serde_json::from_str("\"system/*.cruds\"").unwrap();
        assert!(scopes.allows(Context::System, "Patient", Interaction::Delete));
        let e = serde_json::from_str::<Scopes>("\"system/*.x\"").unwrap_err();
        assert!(e.to_string().contains("system/*.x"), "{e}");
    }
}
